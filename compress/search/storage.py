"""Optuna's RDB storage: SQLite by default, PostgreSQL for many processes on many
machines; heartbeats retry a trial whose worker died.
"""

from __future__ import annotations

import time
import warnings

from compress.errors import UserError, first_line

# A trial whose process died stops beating; after this long it is marked failed and its
# values are tried again once (Optuna's heartbeat, RDB storages).
HEARTBEAT_S, GRACE_S = 30, 120


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL it can parse (a port that is no number)
        return url.split("@")[-1]


def open_storage(url: str):
    """Optuna's RDB storage with heartbeats; a bad or unreachable URL is a user error."""
    import optuna
    import sqlalchemy

    # Heartbeats, metric names and the retry callback are marked experimental; they work.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    connect_args = {"timeout": 60} if url.startswith("sqlite") else \
        {"connect_timeout": 10} if url.startswith("postgres") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": connect_args},
                heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1))
        except sqlalchemy.exc.IntegrityError:
            # Two workers creating the tables of a new storage at once: one wins, the
            # other finds them on a second try.
            time.sleep(0.5 + attempt)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise UserError(f"--storage {redacted(url)}: cannot open it ({first_line(exc)})"
                            ) from None
    raise UserError(f"--storage {redacted(url)}: its tables could not be created")
