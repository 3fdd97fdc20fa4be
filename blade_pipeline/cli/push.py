"""`blade ingest-server` and `blade ingest-token`: the push side of the command."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys


def _cmd_ingest_server(args: argparse.Namespace) -> int:
    import uvicorn

    from blade_pipeline.config.settings import IngestSettings, SettingsError
    from blade_pipeline.config.sources import SourcesFileError, default_sources
    from blade_pipeline.push.app import create_app
    from blade_pipeline.push.auth import TokenVerifier
    from blade_pipeline.push.log import IngestLog

    try:
        settings = IngestSettings.load()
        sources = default_sources()
    except (SettingsError, SourcesFileError) as exc:
        print(f"blade ingest-server: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    verifier = TokenVerifier(settings.jwt_audience, settings.secret(), settings.jwks_url)
    log = IngestLog(settings.nats_url.get_secret_value(), settings.stream,
                    settings.dedupe_window_seconds)
    drain = None
    if not args.no_drain:
        from blade_pipeline.config.settings import BladeSettings
        from blade_pipeline.push.drain import Drain
        from blade_pipeline.storage.lake import ParquetLake

        try:
            lake = ParquetLake.resolved(BladeSettings.load())
        except SettingsError as exc:
            print(f"blade ingest-server: error: {exc}", file=sys.stderr)
            return 2
        drain = Drain(settings.nats_url.get_secret_value(), settings.stream, lake, sources,
                      settings.drain_ack_wait_seconds)
    app = create_app(sources, verifier, log, settings.max_body_bytes, drain, args.flight_port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                limit_concurrency=settings.max_concurrent_requests)
    return 0


def _cmd_ingest_token(args: argparse.Namespace) -> int:
    from blade_pipeline.config.settings import IngestSettings, SettingsError
    from blade_pipeline.push.auth import mint_token

    try:
        settings = IngestSettings.load()
    except SettingsError as exc:
        print(f"blade ingest-token: error: {exc}", file=sys.stderr)
        return 2
    secret = settings.secret()
    if secret is None:
        print("blade ingest-token: error: tokens are verified with BLADE_INGEST_JWKS_URL; "
              "mint them with the key holder, not here", file=sys.stderr)
        return 2
    endpoints: list[str] | str = "*" if args.endpoints == "*" else args.endpoints.split(",")
    try:
        token = mint_token(secret, args.tenant, endpoints, settings.jwt_audience,
                           dt.timedelta(seconds=args.ttl))
    except ValueError as exc:
        print(f"blade ingest-token: error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def add_push_commands(sub: argparse._SubParsersAction) -> None:
    server = sub.add_parser("ingest-server", help="the ingest API for kind: push sources")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8090)
    server.add_argument("--flight-port", type=int, default=None,
                        help="also serve Arrow Flight do_put on this port (bulk clients)")
    server.add_argument("--no-drain", action="store_true",
                        help="only accept batches; another server drains the log into the lake")
    server.set_defaults(handler=_cmd_ingest_server)
    token = sub.add_parser("ingest-token",
                           help="mint a development ingest token (HS256, BLADE_INGEST_JWT_SECRET)")
    token.add_argument("--tenant", required=True)
    token.add_argument("--endpoints", default="*",
                       help="comma-separated push sources it may write, or * (default)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.set_defaults(handler=_cmd_ingest_token)
