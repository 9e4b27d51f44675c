"""zistboom.admin — the admin API (``/admin/v1``) and its credentials.

* :mod:`zistboom.admin.app` — ``create_admin_app(db_url, var_dir=...)`` (FastAPI);
* :mod:`zistboom.admin.deps` — ``require_reader`` / ``require_admin`` / ``get_session`` / ``write_txn``
  for any router mounted on it;
* :mod:`zistboom.admin.errors` — the ``{"error": {"code", "message_fa", "message_en"}}`` shape;
* :mod:`zistboom.admin.auth` — admin and province bearer tokens;
* :mod:`zistboom.admin.cli` — ``zistboom admin [token | province-token IR-xx]``.
"""
