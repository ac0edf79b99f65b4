"Alembic environment for dspyopt's SQL store: every layer's tables on one metadata, one version branch per layer."
import importlib
from alembic import context
from dspyopt_nb.store.db import Base, MODEL_MODULES, get_engine

for m in MODEL_MODULES: importlib.import_module(m)
config = context.config
url = config.get_main_option("sqlalchemy.url")

def run_offline():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction(): context.run_migrations()

def run_online():
    with get_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction(): context.run_migrations()
        conn.commit()

run_offline() if context.is_offline_mode() else run_online()
