"""`lcsynth push`: a finished run as a Hugging Face dataset repo, in one commit.

The upload folder holds one Parquet file per row kind (a config) and split,
`data/<kind>/<split>-00000-of-00001.parquet`, the length histograms under `images/`, and `README.md`, the
dataset card. It is built from the run folder alone, so the same run gives the same bytes and a second push
changes nothing. The token comes from `HF_TOKEN` or the saved login and is only ever sent in request headers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcsynth.errors import ConfigError, HubError, InputError, MissingExtra
from lcsynth.out.card import render_card
from lcsynth.out.export import export_run, length_limit, row_lengths, run_kinds
from lcsynth.out.report import length_summary, length_svg
from lcsynth.out.runfolder import hold
from lcsynth.redaction import secret_values

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_NAME}/{_NAME}")
# lcsynth owns these folders of the repo: files in them that this push does not bring are deleted.
OWNED = ["data/**", "images/**"]


@dataclass
class PushResult:
    """What a push (or a dry run) did."""

    files: list[str]
    counts: dict[str, dict[str, int]]
    url: str | None = None
    commit: str | None = None
    changed: bool = False


def check_repo_id(repo_id: str) -> None:
    """Refuse anything but `owner/name` with the characters and length the Hub accepts."""
    if not _REPO_ID.fullmatch(repo_id) or len(repo_id.split("/")[1]) > 96 or "--" in repo_id or ".." in repo_id:
        raise ConfigError(f"--repo: '{repo_id}' is not a Hub dataset id: write owner/name (letters, digits, "
                          "'-', '_', '.'; at most 96 characters)")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a finished run, or a one-line error."""
    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{run_dir}: no readable manifest.json (is this a finished run?)") from None


def find_leaks(paths: list[Path], secrets: dict[str, str]) -> list[str]:
    """`file: what` for every file that holds one of the secret values."""
    found = []
    wanted = {name: value.encode() for name, value in secrets.items()}
    overlap = max((len(v) for v in wanted.values()), default=1) - 1
    for path in paths:
        seen, tail = set(), b""
        with path.open("rb") as handle:  # in blocks, each with the end of the last, so memory stays bounded
            while block := handle.read(1 << 20):
                window, tail = tail + block, (tail + block)[-overlap:] if overlap else b""
                seen |= {name for name, value in wanted.items() if value in window}
        found += [f"{path.name}: {name}" for name in sorted(seen)]
    return found


def stage(run_dir: Path, folder: Path, repo_id: str, splits: dict[str, float] | None = None,
          license_id: str | None = None, languages: list[str] | None = None,
          hub_token: str | None = None) -> PushResult:
    """Write the upload folder of a run into `folder` (empty or new); refuse if a secret would be published."""
    check_repo_id(repo_id)
    manifest = read_manifest(run_dir)
    kinds = run_kinds(run_dir)
    if not kinds:
        raise InputError(f"{run_dir}: the run wrote no rows; there is nothing to publish")
    splits = splits or {"train": 1.0}
    if any(not re.fullmatch(r"\w+", name) for name in splits):
        raise ConfigError(f"--split: split names are letters, digits and '_' on the Hub, got {', '.join(splits)}")
    counts = export_run(run_dir, "parquet", splits, folder / "data")
    for kind, by_split in counts.items():
        for split in by_split:
            data = folder / "data" / kind
            (data / f"{split}.parquet").rename(data / f"{split}-00000-of-00001.parquet")
    recorded = {kind: row_lengths(run_dir, kind) for kind in kinds}
    lengths = manifest["lengths"] if "lengths" in manifest else {
        kind: length_summary(values) for kind, values in recorded.items() if values}
    images = {}
    for kind, values in recorded.items():
        if values:
            (folder / "images").mkdir(exist_ok=True)
            (folder / "images" / f"{kind}_lengths.svg").write_text(length_svg(kind, values), encoding="utf-8")
            images[kind] = f"images/{kind}_lengths.svg"
    settings = {kind: length_limit(kind, max(values)) for kind, values in recorded.items() if values}
    card = manifest["recipe"].get("card") or {}
    secrets = secret_values([manifest["recipe"]["backend"].get("api_key_env") or ""], hub_token)
    text = render_card(manifest, counts, lengths, settings, images, repo_id, run_dir.resolve().name,
                       license_id or card.get("license") or "other", languages or card.get("language") or ["en"],
                       card.get("pretty_name"), secrets.values())
    (folder / "README.md").write_text(text, encoding="utf-8")
    sources = [folder / "README.md", *sorted((folder / "images").glob("*")),
               *(shard for kind in kinds for shard in sorted(run_dir.glob(f"{kind}-*.jsonl")))]
    leaks = find_leaks(sources, secrets)
    if leaks:
        raise InputError(f"refusing to publish: {leaks[0]} (its value is in the data; remove it from the run first)")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return PushResult(files, counts)


def dry_run(run_dir: Path, out: Path, repo_id: str, **options: Any) -> PushResult:
    """Write exactly the folder a push would upload into `out`, contacting nothing.

    The folder is staged beside `out` and renamed into place whole, so an interrupted dry run leaves no half of it.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--dry-run: {out} exists and is not an empty folder; give a new or empty one")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted dry run
    with hold(run_dir, shared=True):
        try:
            result = stage(run_dir, staging, repo_id, **options)
            if out.exists():
                out.rmdir()
            os.replace(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return result


def push(run_dir: Path, repo_id: str, private: bool = False, revision: str | None = None,
         endpoint: str | None = None, **options: Any) -> PushResult:
    """Create (or reuse) the dataset repo and commit the run's upload folder to it in one commit.

    The endpoint is `endpoint`, else `HF_ENDPOINT` as set now, else the public Hub.
    """
    check_repo_id(repo_id)
    read_manifest(run_dir)
    try:
        from huggingface_hub import HfApi, get_token
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise MissingExtra("huggingface_hub", "hub", "lcsynth push") from None
    if not sys.stderr.isatty():
        disable_progress_bars()
    token = get_token()
    if not token:
        raise ConfigError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
                          "(or write the upload folder with --dry-run OUT_DIR)")
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token, library_name="lcsynth")
    with hold(run_dir, shared=True), tempfile.TemporaryDirectory(prefix="lcsynth-push-") as tmp:
        result = stage(run_dir, Path(tmp) / "upload", repo_id, hub_token=token, **options)
        try:
            url = api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private or None)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
            before = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
            commit = api.upload_folder(
                repo_id=repo_id, repo_type="dataset", folder_path=Path(tmp) / "upload", revision=revision,
                commit_message=f"lcsynth run {run_dir.resolve().name}",
                commit_description="Rows, dataset card and length histograms written by `lcsynth push`.",
                delete_patterns=OWNED)
        except Exception as exc:  # every failure of the Hub client, told in one line
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(token, "<redacted>")
            raise HubError(f"pushing to {repo_id} failed: {message}") from exc
    result.url, result.commit, result.changed = str(url), commit.oid, commit.oid != before
    return result
