"""Label Studio's side, knowing nothing of the store or the server: the labeling config (`label_config`), the
regions of an annotation (`regions`), exports and the shared-task TSV (`export`), the REST API client (`api`),
project creation (`project`), corpus readers (`corpus`) and gold-standard curation (`curation`)."""
