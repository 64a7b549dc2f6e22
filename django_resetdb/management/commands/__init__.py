"""``resetschema``, ``resetmigrations``, ``seed`` and ``resetdb``."""
