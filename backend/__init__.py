"""Label Studio ML backend for clinlinker: a thin adapter from Label Studio's JSON to the linker.

Packages by role, each importing only those below it (tests/test_layout.py checks it):

    commands     the `clinlinker` subcommands that know Label Studio (serve, annotate, export, curate, sync, ...)
    jobs         bulk pre-annotation of a corpus and the setup check, run beside the server
    serving      the Flask app, its routes, the model wrapper, settings, metrics, retraining
    records      the store of record and what derives from it: webhook intake, learned terms, resync, housekeeping
    labelstudio  Label Studio's formats and API: labeling config, regions, exports, the API client, projects,
                 corpus readers, curation
"""
