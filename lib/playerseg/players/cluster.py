"""Team assignment and player flags, written back into the outputs of `playerseg infer` (the
command: `playerseg.players.cluster_cmd`).

A Ray Data job in three passes over the prediction part files `<predictions>/predictions/<group>/<unit>.parquet`:
1. embed (actor pool): per part file, the frames its rows name are read again from the inputs
   (videos, frame folders or frame Parquet, planned like `playerseg infer` plans them), and every
   `player` instance gets an embedding (`embed.method`: colour histogram, masked encoder
   features, or masked SAM image-encoder features with `embed.sam_checkpoint`) and its flags (LED overlap against the frame's `led_board` instances, border
   truncation, merged-player cues); cached as `<predictions>/_cluster/<fp>/embed/<group>/<unit>.parquet`;
2. fit (driver): per video (group), k-means k=2 with outliers (`playerseg.players.teams`) on at
   most `fit_max` embeddings (an even, deterministic sample), saved as `<fp>/teams/<group>.json`;
3. write (tasks): each part file gets the columns `team` (0 / 1, 2 = other: referee or
   goalkeeper, -1 = not a player) and `led_overlap`, `led`, `truncated`, `merged` (null for
   non-players), rewritten atomically with `playerseg.cluster=<fp>` in its Parquet metadata.
   When the parts carry `track_id` (`playerseg infer` tracks), `team` is the vote of the track
   (`tracks.vote_teams` over the per-frame teams of all its instances in the video) and
   `team_frame` keeps the per-frame assignment; untracked players keep their own.
`<fp>` fingerprints the options, and a part's stamp is `<fp>-<hash of its video's team model>`:
a re-run skips parts already written with the same stamp and reuses finished embeddings and
team models, so a killed job resumes; a video that gained part files is fitted again and all its
parts rewritten (one team model per video, never a mix). Bad inputs are named in the summary;
a video with a failed part is not fitted (its other parts wait for a re-run).

`<predictions>/_cluster` is an output folder of `playerseg.ledger` (`_run.json`: the options), with
its one mismatch rule: a run with other options than the parts were clustered with is refused
before any work, in one line naming what differs (exit status 2), and `--overwrite` discards the
old embeddings and team models and rewrites every part. The parts themselves stay `playerseg infer`'s
(its ledger's units, its done markers): clustering is a second pass that rewrites them in place, so
what it did is stamped in each part's metadata, where it travels with the file, rather than in
done markers of its own. It holds the inference folder's `_lock` while it rewrites them (never
beside a running `playerseg infer` into that folder), and `playerseg infer --overwrite` removes
`_cluster` with the parts it was made from.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from playerseg import config as cfgmod
from playerseg.data.errors import DataError, Failures
from playerseg.io import parquet_parts, short_hash, write_table_atomic
from playerseg.players.embed import ColourConfig, EncoderConfig
from playerseg.players.flags import FLAG_COLUMNS, FlagsConfig
from playerseg.players.parts import (META_KEY, cache_table, embeddings_of, frames_for, part_key,
                                     part_stamp, read_part, stamp)
from playerseg.players.teams import UNKNOWN, TeamConfig

log = logging.getLogger(__name__)


@dataclass
class EmbedConfig:
    method: str = "colour"  # colour | encoder | sam
    sam_type: str = "vit_b"  # method sam: a model type of playerseg.sam.build
    sam_checkpoint: str = ""  # method sam: its weights (path or URI; never downloaded)
    colour: ColourConfig = field(default_factory=ColourConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


@dataclass
class ClusterConfig:
    inputs: list[str] = field(default_factory=list)  # what `playerseg infer` read (videos, folders, Parquet)
    predictions: str = ""  # the output folder of `playerseg infer`
    model: str = ""  # Segmenter folder whose encoder embeds (method encoder); "" = ImageNet encoder
    segment_seconds: float = 10.0  # planning of the inputs (frames are matched by index, any split works)
    segment_frames: int = 0
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    teams: TeamConfig = field(default_factory=TeamConfig)
    flags: FlagsConfig = field(default_factory=FlagsConfig)
    min_pixels: int = 0  # players with fewer mask pixels get no team (UNKNOWN)
    fit_max: int = 20000  # embeddings per video used to fit k-means
    workers: int = 1  # embedding actors
    num_cpus: float = 1.0  # per embedding actor
    num_gpus: float = 0.0  # per embedding actor (encoder method)
    address: str | None = None  # Ray cluster to join


def signature(cfg: ClusterConfig) -> dict:
    """The options the written columns depend on (the `_cluster` ledger's signature)."""
    return {"model": cfg.model, "embed": cfgmod.to_dict(cfg.embed), "teams": cfgmod.to_dict(cfg.teams),
            "flags": cfgmod.to_dict(cfg.flags), "min_pixels": cfg.min_pixels, "fit_max": cfg.fit_max}


def fingerprint(cfg: ClusterConfig) -> str:
    return short_hash(signature(cfg))


# ---- parts ------------------------------------------------------------------------------------
def cache_path(cfg: ClusterConfig, fp: str, kind: str, group: str, name: str = "") -> str:
    base = f"{cfg.predictions.rstrip('/')}/_cluster/{fp}/{kind}/{group}"
    return f"{base}/{name}.parquet" if name else f"{base}.json"


# ---- pass 1: embeddings and flags of one part ---------------------------------------------------
def embed_part(part: str, units: list, cfg: ClusterConfig, embedder) -> dict:
    """The cache table rows of one part: instance keys, embedding, flags (players only)."""
    from playerseg.data.reader import mask_box
    from playerseg.metrics.rle import decode
    from playerseg.players.embed import colour_histograms, hellinger
    from playerseg.players.flags import instance_flags
    from playerseg.video.schema import prediction_rle

    table = read_part(part)
    rows = table.select([c for c in ("frame_index", "instance_id", "class", "mask_rle_size", "mask_rle_counts")
                         if c in table.column_names]).to_pylist()
    by_frame: dict[int, list[dict]] = {}
    for i, r in enumerate(rows):
        r["row"] = i
        by_frame.setdefault(int(r["frame_index"]), []).append(r)
    needed = {f for f, rs in by_frame.items() if any(r["class"] == "player" for r in rs)}
    out = {"row": [], "embedding": [], **{k: [] for k in FLAG_COLUMNS}}
    for frame in frames_for(part, units, needed) if needed else ():
        rs = by_frame[frame.frame_index]
        players = [r for r in rs if r["class"] == "player"]
        masks = [decode(prediction_rle(r)) for r in players]
        if masks and masks[0].shape != frame.image.shape[:2]:
            raise DataError(part, f"frame {frame.frame_index}: masks are {masks[0].shape[1]}x{masks[0].shape[0]}, "
                                  f"the input frame {frame.image.shape[1]}x{frame.image.shape[0]}")
        led = np.zeros(frame.image.shape[:2], dtype=bool)
        for r in rs:
            if r["class"] == "led_board":
                led |= decode(prediction_rle(r))
        boxes = [mask_box(m) if m.any() else (0.0, 0.0, 0.0, 0.0) for m in masks]
        if cfg.embed.method == "colour":
            feats = hellinger(colour_histograms(frame.image, masks, boxes, cfg.embed.colour))
        else:
            feats = embedder(frame.image, masks, boxes)
        for r, f, fl, m in zip(players, feats, instance_flags(boxes, masks, led, cfg.flags), masks):
            if int(np.count_nonzero(m)) < max(1, cfg.min_pixels):
                continue
            out["row"].append(r["row"])
            out["embedding"].append(np.asarray(f, dtype=np.float32))
            for k in FLAG_COLUMNS:
                out[k].append(fl[k])
    return out


class EmbedPart:
    """Embeds one part file into the cache (`map_items(..., actors=N)`: one per actor, holding the
    encoder when one is used)."""

    def __init__(self, cfg: ClusterConfig, fp: str):
        self.cfg = cfg
        self.fp = fp
        self.embedder = None
        if self.cfg.embed.method == "encoder":
            from playerseg.players.embed import EncoderEmbedder

            if self.cfg.model:
                from playerseg.models.segmenter import Segmenter

                self.embedder = EncoderEmbedder.from_segmenter(Segmenter.load(self.cfg.model), self.cfg.embed.encoder)
            else:
                self.embedder = EncoderEmbedder.imagenet(self.cfg.embed.encoder)
        elif self.cfg.embed.method == "sam":
            from playerseg.players.embed import SamEmbedder
            from playerseg.sam.build import build_sam

            self.embedder = SamEmbedder(build_sam(self.cfg.embed.sam_type, self.cfg.embed.sam_checkpoint or None))

    def __call__(self, item: dict) -> None:
        from playerseg.video.frames import Unit

        part = item["part"]
        group, name = part_key(part)
        units = [Unit.from_json(u) for u in json.loads(item["units"])]
        out = embed_part(part, units, self.cfg, self.embedder)
        write_table_atomic(cache_path(self.cfg, self.fp, "embed", group, name), cache_table(out))


# ---- pass 2 and 3 -------------------------------------------------------------------------------
def fit_group(cfg: ClusterConfig, fp: str, group: str, parts: list[str]) -> dict:
    """Fit the team model of one video on the embeddings of its parts; returns its JSON state."""
    from playerseg.io import write_json_atomic
    from playerseg.players.teams import TeamModel

    feats = [embeddings_of(read_part(cache_path(cfg, fp, "embed", group, part_key(p)[1]))) for p in parts]
    feats = [f for f in feats if len(f)]
    x = np.concatenate(feats) if feats else np.zeros((0, 1), np.float32)
    if len(x) > cfg.fit_max:  # an even, deterministic sample over the whole video
        x = x[np.linspace(0, len(x) - 1, cfg.fit_max).round().astype(int)]
    state = TeamModel(cfg.teams).fit(x).state()
    state.update({"fitted_on": int(len(x)), "parts": sorted(part_key(p)[1] for p in parts)})
    write_json_atomic(cache_path(cfg, fp, "teams", group), state)
    return state


def known_state(cfg: ClusterConfig, fp: str, group: str, parts: list[str]) -> dict | None:
    """The fitted team model of a video when it was fitted on exactly these parts."""
    from playerseg.io import exists, read_json

    path = cache_path(cfg, fp, "teams", group)
    state = read_json(path) if exists(path) else {}
    return state if state.get("parts") == sorted(part_key(p)[1] for p in parts) else None


def write_part(part: str, cfg: ClusterConfig, fp: str, state: dict) -> None:
    """Rewrite one part with `team` and the flag columns (atomically, fingerprint in its metadata)."""
    import pyarrow as pa

    from playerseg.players.teams import TeamModel

    table = read_part(part)
    group, name = part_key(part)
    cache = read_part(cache_path(cfg, fp, "embed", group, name))
    n = table.num_rows
    team = np.full(n, UNKNOWN, dtype=np.int32)
    rows = cache.column("row").to_numpy()
    if len(rows) and state["centroids"] is not None:
        team[rows] = TeamModel.from_state(state, cfg.teams).predict(embeddings_of(cache))
    columns = {"team": pa.array(team, pa.int32())}
    if "track_teams" in state:  # one team per track, the frame's own kept beside it
        votes = state["track_teams"]
        tracks = table.column("track_id").fill_null(-1).to_numpy().astype(np.int64)
        voted = np.array([votes.get(str(t), v) if t >= 0 and v != UNKNOWN else v for t, v in zip(tracks, team)],
                         dtype=np.int32)
        columns = {"team": pa.array(voted, pa.int32()), "team_frame": pa.array(team, pa.int32())}
    for k in FLAG_COLUMNS:
        values = [None] * n
        for r, v in zip(rows, cache.column(k).to_pylist()):
            values[int(r)] = v
        columns[k] = pa.array(values, pa.float32() if k == "led_overlap" else pa.bool_())
    for k, arr in columns.items():
        if k in table.column_names:
            table = table.set_column(table.column_names.index(k), k, arr)
        else:
            table = table.append_column(k, arr)
    write_table_atomic(part, table, {META_KEY: stamp(fp, state).encode()})


def _track_ids(part: str) -> np.ndarray | None:
    """The `track_id` column of a part (-1 for nulls), None when it has none."""
    import pyarrow.parquet as pq

    from playerseg.io import filesystem

    fs, path = filesystem(part)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        if "track_id" not in pf.schema_arrow.names:
            return None
        return pf.read(columns=["track_id"]).column("track_id").fill_null(-1).to_numpy().astype(np.int64)


def with_track_teams(cfg: ClusterConfig, fp: str, group: str, parts: list[str], state: dict) -> dict:
    """`state` plus `track_teams` ({track id: team}, voted over the video) when its parts are tracked."""
    from playerseg.players.teams import TeamModel
    from playerseg.players.tracks import vote_teams

    if state["centroids"] is None:
        return state
    model = TeamModel.from_state(state, cfg.teams)
    ids, teams = [], []
    for p in parts:
        tracks = _track_ids(p)
        if tracks is None:
            return state
        cache = read_part(cache_path(cfg, fp, "embed", group, part_key(p)[1]))
        rows = cache.column("row").to_numpy()
        if len(rows):
            ids.append(tracks[rows])
            teams.append(model.predict(embeddings_of(cache)))
    votes = vote_teams(np.concatenate(ids), np.concatenate(teams)) if ids else {}
    return {**state, "track_teams": {str(t): v for t, v in sorted(votes.items())}}


# ---- the job ------------------------------------------------------------------------------------
def cluster(cfg: ClusterConfig, overwrite: bool = False) -> dict:
    """Run the three passes; returns the summary (also written to `<predictions>/_cluster/<fp>/summary.json`).
    ConfigError when an option is wrong, the parts were clustered with other options (`overwrite`: redo them) or
    another run writes into the folder."""
    from playerseg.ledger import Ledger, acquire_lock, release_lock

    if cfg.embed.method not in ("colour", "encoder", "sam"):
        raise cfgmod.ConfigError(f"embed.method must be colour, encoder or sam, got {cfg.embed.method!r}")
    if cfg.embed.method == "sam" and not cfg.embed.sam_checkpoint and cfg.embed.sam_type != "tiny_untrained":
        raise cfgmod.ConfigError("embed.method=sam needs embed.sam_checkpoint (SAM weights are never downloaded)")
    if not cfg.predictions:
        raise cfgmod.ConfigError("no predictions: pass --predictions <the output folder of `playerseg infer`>")
    parts_lock = acquire_lock(cfg.predictions)  # the parts are infer's: no infer run writes them meanwhile
    try:
        with Ledger(f"{cfg.predictions.rstrip('/')}/_cluster", signature(cfg), overwrite,
                    elsewhere="the options they were clustered with"):
            return _cluster(cfg)
    finally:
        release_lock(parts_lock)


def _cluster(cfg: ClusterConfig) -> dict:
    from playerseg.io import exists, write_json_atomic
    from playerseg.ray_cluster import init_ray, map_items
    from playerseg.video.frames import plan_units

    start = time.time()
    fp = fingerprint(cfg)
    parts = parquet_parts(f"{cfg.predictions.rstrip('/')}/predictions")
    if not parts:
        raise DataError(cfg.predictions, "no prediction part files under predictions/")
    groups: dict[str, list[str]] = {}
    for p in parts:
        groups.setdefault(part_key(p)[0], []).append(p)
    states = {g: known_state(cfg, fp, g, ps) for g, ps in groups.items()}
    failures = Failures()
    summary = {"fingerprint": fp, "parts": len(parts), "already_written": 0, "videos": {}}
    need_embed = [p for g, ps in groups.items() if states[g] is None for p in ps
                  if not exists(cache_path(cfg, fp, "embed", g, part_key(p)[1]))]
    if need_embed:
        init_ray(cfg.address)
        units, plan_failures = plan_units(cfg.inputs, cfg.segment_seconds, cfg.segment_frames)
        failures.items += plan_failures.items
        by_group: dict[str, list[str]] = {}
        for u in units:
            by_group.setdefault(u.group, []).append(u.to_json())
        items = [{"part": p, "units": json.dumps(by_group.get(part_key(p)[0], []))} for p in need_embed]
        _, failed = map_items(items, EmbedPart, fn_kwargs={"cfg": cfg, "fp": fp}, actors=max(1, cfg.workers),
                              num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, what="cluster: embed", unit="part",
                              name=lambda item: item["part"])
        failures.items += failed.items
    failed = {p for p, _ in failures.items}
    written = 0
    for g, ps in sorted(groups.items()):
        if any(p in failed for p in ps):  # a video is fitted on all its parts: the rest waits for a re-run
            log.error("video %s: %d part(s) failed; its teams are not fitted", g, sum(p in failed for p in ps))
            continue
        state = with_track_teams(cfg, fp, g, ps, states[g] or fit_group(cfg, fp, g, ps))
        todo = [p for p in ps if part_stamp(p) != stamp(fp, state)]
        summary["already_written"] += len(ps) - len(todo)
        if todo:
            init_ray(cfg.address)
            done, failed = map_items(todo, write_part, what=f"cluster: write {g}", unit="part", num_cpus=0.25,
                                     fn_kwargs={"cfg": cfg, "fp": fp, "state": state})
            written += len(done)
            failures.items += failed.items
        summary["videos"][g] = {"fitted_on": state.get("fitted_on", 0), "parts": len(ps)}
    summary.update({"written": written, "failed": len(failures), "failures": failures.summary() if failures else "",
                    "seconds": round(time.time() - start, 2)})
    write_json_atomic(f"{cfg.predictions.rstrip('/')}/_cluster/{fp}/summary.json", summary)
    return summary
