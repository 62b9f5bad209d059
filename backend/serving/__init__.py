"""The server: the Flask app (`app`) and its routes by caller (`routes`), what a process loads at start
(`loading`), the model wrapper that turns tasks into candidate lists (`model`), request bodies (`request_body`),
settings (`config`), metrics (`metrics`), background fine-tuning (`retrain`) and gunicorn's hooks (`gunicorn_conf`).
Imports `backend.records` and `backend.labelstudio` below it."""
