"""memegap-collect: acquisition commands.

    memegap-collect twitter  --out data/memes                      # X_BEARER_TOKEN in the environment
    memegap-collect download --table data/memes/memes.parquet      # fills image_path
    memegap-collect download --urls urls.txt --out data/images
    memegap-collect arasaac  --root data/arasaac --locales es en --resolution 300
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rich_argparse import RawDescriptionRichHelpFormatter

from memegap.collect.arasaac import API_URL, RESOLUTIONS, STATIC_URL, fetch_arasaac
from memegap.collect.download import DownloadSettings, Downloader
from memegap.collect.tables import read_rows, write_rows
from memegap.collect.twitter import MEMES_SCHEMA, TOKEN_ENV, MinerSettings, TwitterMiner


def add_download_options(parser: argparse.ArgumentParser) -> None:
    defaults = DownloadSettings()
    parser.add_argument("--workers", type=int, default=defaults.workers, help="parallel downloads")
    parser.add_argument("--max-bytes", type=int, default=defaults.max_bytes, help="largest body accepted, bytes")
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels, help="largest image accepted, width × height")
    parser.add_argument("--read-timeout", type=float, default=defaults.read_timeout, help="seconds without a byte")
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts)


def download_settings(args: argparse.Namespace) -> DownloadSettings:
    return DownloadSettings(workers=args.workers, max_bytes=args.max_bytes, max_pixels=args.max_pixels, read_timeout=args.read_timeout, max_attempts=args.max_attempts)


def run_twitter(args: argparse.Namespace) -> dict:
    miner = TwitterMiner(args.out, token_env=args.token_env, api_base_url=args.api_base_url, settings=MinerSettings(page_size=args.page_size))
    return miner.run(args.accounts, args.context_account or None)


def run_download(args: argparse.Namespace) -> dict:
    settings = download_settings(args)
    if args.table:
        table = Path(args.table)
        memes = read_rows(table)
        out = Path(args.out) if args.out else table.parent / "images"
        urls = [row["image_url"] for row in memes if row["image_url"]]
        rows = {row["url"]: row for row in Downloader(out, settings).fetch_all(urls)}
        for meme in memes:
            row = rows.get(meme["image_url"])
            meme["image_path"] = row["path"] if row and row["status"] == "ok" else None
        write_rows(table, memes, MEMES_SCHEMA)
    else:
        if not args.out:
            raise SystemExit("download --urls needs --out")
        urls = [line.strip() for line in Path(args.urls).read_text().splitlines() if line.strip() and not line.startswith("#")]
        rows = {row["url"]: row for row in Downloader(args.out, settings).fetch_all(urls)}
    return {status: sum(r["status"] == status for r in rows.values()) for status in ("ok", "rejected", "failed")}


def run_arasaac(args: argparse.Namespace) -> dict:
    return fetch_arasaac(args.root, tuple(args.locales), args.resolution, args.api_url, args.static_url, download_settings(args), args.refresh_lists)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memegap-collect", description=__doc__, formatter_class=RawDescriptionRichHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    twitter = commands.add_parser("twitter", help="mine meme accounts and their context account (X API v2)", formatter_class=RawDescriptionRichHelpFormatter)
    twitter.add_argument("--out", required=True, help="folder of memes.parquet, context.parquet and checkpoints/")
    twitter.add_argument("--accounts", nargs="+", default=["ShitpostBot5000"], help="meme accounts")
    twitter.add_argument("--context-account", default="ShitpostContext", help="account whose tweets give templates and sources ('' for none)")
    twitter.add_argument("--token-env", default=TOKEN_ENV, help="environment variable holding the bearer token")
    twitter.add_argument("--api-base-url", default=None, help="send API requests to this base URL instead (mirror, proxy)")
    twitter.add_argument("--page-size", type=int, default=100)
    twitter.set_defaults(run=run_twitter)

    download = commands.add_parser("download", help="download images robustly, with a manifest", formatter_class=RawDescriptionRichHelpFormatter)
    source = download.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", help="a memes.parquet: downloads image_url and fills image_path")
    source.add_argument("--urls", help="a text file with one URL a line")
    download.add_argument("--out", help="target folder (default with --table: <table folder>/images)")
    add_download_options(download)
    download.set_defaults(run=run_download)

    arasaac = commands.add_parser("arasaac", help="ARASAAC pictogram lists and PNGs", formatter_class=RawDescriptionRichHelpFormatter)
    arasaac.add_argument("--root", required=True)
    arasaac.add_argument("--locales", nargs="+", default=["es", "en"])
    arasaac.add_argument("--resolution", type=int, default=300, choices=RESOLUTIONS)
    arasaac.add_argument("--api-url", default=API_URL)
    arasaac.add_argument("--static-url", default=STATIC_URL)
    arasaac.add_argument("--refresh-lists", action="store_true", help="fetch the lists again even if saved")
    add_download_options(arasaac)
    arasaac.set_defaults(run=run_arasaac)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    print(json.dumps(args.run(args), indent=2))


if __name__ == "__main__":
    main()
