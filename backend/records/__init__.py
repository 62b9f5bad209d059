"""The store of record and what derives from it: the tables and their migrations (`schema`), the store itself
(`store`: every accepted fact stored once, durably, before the answer), webhook intake (`webhooks`), the learned
terms rebuilt from accepted links (`learning`), resync from Label Studio (`resync`) and housekeeping (`housekeeping`).
Imports only `backend.labelstudio` below it."""
