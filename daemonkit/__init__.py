"""The shell every ByteLeap process shares, below the daemons and above the pure core.

The worker (``workers``), the miner and validator (``neurons``) and the devnet all run the same
way, so they take these pieces from one place instead of each growing its own:

- :mod:`daemonkit.logs`: one logging set-up for structlog *and* the standard library, so a
  library's ``logging.getLogger(__name__)`` comes out in the same structured format, through the
  same handler, as the daemons' own events, with secret-looking fields redacted;
- :mod:`daemonkit.cli`: the typer/rich glue of every command line (``--config``,
  ``check-config``, error exits);
- :mod:`daemonkit.signals`: uvicorn-style shutdown: the first SIGINT/SIGTERM asks for a graceful
  stop that gets a bounded time to drain, a second one exits at once;
- :mod:`daemonkit.http`: the one way an ASGI app is served by uvicorn inside a daemon's event
  loop (no signal capture of its own, bounded graceful shutdown, a bind failure as a
  ``ConfigError``).

It may import the pure core (``byteleap``) and I/O libraries, never a daemon or the devnet
(import-linter enforces it).
"""
