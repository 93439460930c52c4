"""geodeform.config: presets, YAML in and out, and every bad input named with its field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from geodeform.config import (
    PRESETS,
    JobConfig,
    MatchingConfig,
    deep_merge,
    load_config,
    preset_config,
    search_range_px,
)
from geodeform.errors import InvalidInputError

BASE = {
    "name": "job",
    "search": {"start": "2023-06-01", "end": "2023-09-30", "aoi": {"bbox": [6.0, 45.0, 6.2, 45.1]}},
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_init_yaml_round_trips_and_documents_every_field(preset: str, tmp_path: Path, cli) -> None:
    proc = cli("init", "--preset", preset)
    assert proc.code == 0, proc.stderr
    text = proc.stdout
    config = load_config(yaml.safe_load(text))
    assert config == preset_config(preset)
    assert config.preset == preset
    # every field of every section is written with a comment (its description)
    for name, info in MatchingConfig.model_fields.items():
        line = next(s for s in text.splitlines() if s.strip().startswith(f"{name}:"))
        assert "#" in line and info.description and info.description[:20] in line
    path = tmp_path / "job.yaml"
    assert cli("init", "--preset", preset, "-o", str(path)).code == 0
    assert load_config(path) == config


def test_presets_differ_where_the_physics_differs() -> None:
    ice, slide, quake = (preset_config(p) for p in ("ice", "slide", "quake"))
    assert ice.matching.expected_max_speed > 10 * slide.matching.expected_max_speed
    assert slide.pairs.max_range > ice.pairs.max_range  # slow motion needs long pairs
    assert quake.matching.expected_max_displacement > 0 and not quake.inversion.enabled
    assert quake.pairs.mode == "acquisitions"


def test_user_values_override_the_preset_and_the_rest_stays() -> None:
    c = load_config({**BASE, "preset": "slide", "matching": {"chip_size": 64}})
    assert c.matching.chip_size == 64
    assert c.matching.expected_max_speed == PRESETS["slide"]["matching"]["expected_max_speed"]


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"search": {**BASE["search"], "max_images": 1}}, "search.max_images", "greater than or equal to 2"),
        ({"search": {**BASE["search"], "max_images": 10**6}}, "search.max_images", "less than or equal to 1"),
        ({"pairs": {"min_range": 50, "max_range": 10}}, "pairs", "min_range 50.0 is larger than max_range"),
        ({"search": {**BASE["search"], "start": "2023-10-01"}}, "search", "is after end"),
        ({"matching": {"method": "sift"}}, "matching.method", "'ncc', 'phase' or 'flow'"),
        ({"matching": {"chip_size": "big"}}, "matching.chip_size", "valid integer"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"pairs": {"direction": "sideways"}}, "pairs.direction", "forward"),
        ({"search": {**BASE["search"], "aoi": {}}}, "search.aoi", "no area of interest"),
        ({"name": "bad name!"}, "name", "pattern"),
        ({"search": None}, "(top level)", "either 'search'"),
        # validated at load (#27), not when the run reaches them
        ({"pairs": {"season": ["June", "July"]}}, "pairs.season", "'June' is not a month and day"),
        ({"pairs": {"season": ["02-30", "03-01"]}}, "pairs.season", "'02-30' is not a month and day"),
        ({"search": {**BASE["search"], "months": "13-2"}}, "search.months", "two months 1-12"),
        ({"search": {**BASE["search"], "months": "june"}}, "search.months", "FIRST-LAST"),
        ({"search": {**BASE["search"], "aoi": {"tiles": ["ZZZZZ"]}}}, "search.aoi.tiles", "not an MGRS tile"),
        ({"search": {**BASE["search"], "aoi": {"tiles": ["07VCG", "08VLM"]}}}, "search.aoi", "UTM zones"),
        (
            {"search": {**BASE["search"], "collection": "landsat", "catalog": "cdse"}},
            "search",
            "not offered by the cdse",
        ),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(change: dict, field: str, hint: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        load_config({**BASE, **change})
    text = str(err.value)
    assert f"- {field}:" in text, text
    assert hint in text, text


def test_inputs_count_and_unique_dates(tmp_path: Path) -> None:
    one = [{"path": "a.tif", "date": "2020-01-01"}]
    with pytest.raises(InvalidInputError, match="1 images given; 2 to 100,000"):
        load_config({"name": "j", "inputs": one})
    # jobs are not capped at 100 images any more (ten-year series): 250 dates load
    days = np.datetime64("2015-01-01") + np.arange(250) * 12
    many = [{"path": f"{i}.tif", "date": str(d)} for i, d in enumerate(days)]
    assert len(load_config({"name": "j", "inputs": many}).inputs) == 250
    with pytest.raises(InvalidInputError, match="share one date"):
        load_config({"name": "j", "inputs": [*many, {"path": "x.tif", "date": str(days[0])}]})
    twice = [{"path": "a.tif", "date": "2020-01-01"}, {"path": "b.tif", "date": "2020-01-01"}]
    with pytest.raises(InvalidInputError, match="share one date"):
        load_config({"name": "j", "inputs": twice})


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(InvalidInputError, match="expected a mapping"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({**BASE, "preset": "volcano"}))
    with pytest.raises(InvalidInputError, match="preset 'volcano' unknown"):
        load_config(bad)


def test_run_with_a_bad_config_exits_2_and_writes_nothing(tmp_path: Path, cli) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE, "pairs": {"min_range": 9, "max_range": 3}, "matching": {"x": 1}}))
    before = sorted(tmp_path.rglob("*"))
    proc = cli("run", str(path), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.code == 2
    assert "pairs: min_range" in proc.stderr and "matching.x: unknown key" in proc.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no run folder, no log, nothing half-written
    # a valid config naming a missing file: exit 2, the field named, nothing written either
    inputs = [{"path": "gone.tif", "date": "2020-01-01"}, {"path": "gone2.tif", "date": "2020-01-17"}]
    path.write_text(yaml.safe_dump({"name": "j", "inputs": inputs, "masks": {"glacier": "rgi.geojson"}}))
    proc = cli("run", str(path), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.code == 2
    text = " ".join(proc.stderr.split())
    assert "inputs[0].path: file gone.tif not found" in text and "masks.glacier: file rgi.geojson" in text
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"pairs": {"season": ["June", "July"]}}, "pairs.season"),
        ({"search": {**BASE["search"], "months": "13-2"}}, "search.months"),
        ({"search": {**BASE["search"], "aoi": {"tiles": ["32TZZ9"]}}}, "search.aoi.tiles"),
    ],
)
def test_bad_season_months_or_tiles_exit_2_before_anything_is_written(
    tmp_path: Path, cli, change: dict, needle: str
) -> None:
    # before #27 a bad season passed load_config and the run failed later, after writing config.yaml,
    # images/ and run.log
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    before = sorted(tmp_path.rglob("*"))
    proc = cli("run", str(path), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.code == 2, proc.stderr
    assert needle in proc.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_search_range_from_speed_is_never_zero() -> None:
    m = MatchingConfig(expected_max_speed=1500.0)
    # 1500 m/yr over 32 days at 30 m: 4.38 px -> x1.5 + 2 = 8.6 -> 9
    assert search_range_px(m, dt_days=32, pixel_m=30.0) == 9
    assert search_range_px(MatchingConfig(expected_max_speed=0.001), dt_days=1, pixel_m=10.0) >= 2
    assert search_range_px(m.model_copy(update={"search_range": 5}), dt_days=300, pixel_m=10) == 5
    quake = MatchingConfig(expected_max_speed=1.0, expected_max_displacement=20.0)
    assert search_range_px(quake, dt_days=12, pixel_m=10.0) == 6  # ceil(20.03 m / 10 m x 1.5) + 2


def test_the_smoothing_model_is_ncc_s_and_reaches_the_matcher_and_the_error_model() -> None:
    from geodeform.timeseries.chunked import NodeErrors

    with pytest.raises(InvalidInputError, match="smoothing_model"):
        load_config({**BASE, "matching": {"method": "phase", "smoothing_model": "quadratic-sided"}})
    assert MatchingConfig().smoothing_model == "plane"
    sided = NodeErrors.calibrated("quadratic-sided", step=1.0, chip=2.0)
    plane = NodeErrors.calibrated("plane", step=1.0, chip=2.0)
    assert sided.gain and sided.margin > 0 and sided.model is not None and sided.model.isotropic
    assert not plane.gain and plane.margin == 0 and plane.model is None


def test_json_schema_documents_every_field() -> None:
    schema = JobConfig.model_json_schema()
    for section in schema["$defs"].values():
        for name, prop in section.get("properties", {}).items():
            assert prop.get("description"), f"{section['title']}.{name} has no description"


def test_deep_merge_lays_sections_over_each_other_without_touching_them() -> None:
    base = {"matching": {"chip_size": 32, "step": 16}, "name": "a"}
    top = {"matching": {"step": 8}, "inversion": {"enabled": False}}
    merged = deep_merge(base, top)
    assert merged == {"matching": {"chip_size": 32, "step": 8}, "name": "a", "inversion": {"enabled": False}}
    merged["matching"]["chip_size"] = 64
    assert base["matching"] == {"chip_size": 32, "step": 16} and top == {
        "matching": {"step": 8},
        "inversion": {"enabled": False},
    }


# --- messy inputs: plain paths, dates from the names, a mask per image, the template ------------------


def test_inputs_as_plain_paths_with_dates_from_their_names() -> None:
    config = load_config(
        {
            "name": "j",
            "inputs": [
                "data/S2B_33TWM_20230813_0_L2A/B04.tif",  # Earth Search folder
                {"path": "LC08_L2SP_001062_20230818_20230826_02_T1_SR_B4.TIF", "mask": "clouds.geojson"},
                {"path": "x.tif", "date": "2023-08-28", "mask": "none"},
            ],
        }
    )
    assert [(i.day.isoformat(), i.mask) for i in config.inputs] == [
        ("2023-08-13", None),
        ("2023-08-18", "clouds.geojson"),
        ("2023-08-28", "none"),
    ]
    with pytest.raises(InvalidInputError) as err:
        load_config({"name": "j", "inputs": ["a.tif", "b_20200101.tif", 3]})
    text = str(err.value)
    assert "- inputs[0]: no date for a.tif" in text and "add date: YYYY-MM-DD" in text
    assert "- inputs[2]: expected a path or a mapping of keys, got 3" in text
    with pytest.raises(InvalidInputError, match="inputs is a list"):
        load_config({"name": "j", "inputs": "a_20200101.tif"})


def test_init_template_shows_the_inputs_item_format(cli) -> None:
    text = cli("init", "--preset", "ice").stdout
    lines = text.splitlines()
    k = next(i for i, s in enumerate(lines) if s.startswith("inputs: []"))
    example = "\n".join(lines[k : k + 9])
    for key in ("- path: S2B_33TWM_20230813_0_L2A/B04.tif", "date: 2023-08-13", "band: 1", "mask: null"):
        assert f"#   {key}" in example or f"#     {key}" in example, example
    assert "or just the paths" in example
    # the example, uncommented, is a valid inputs section
    item = yaml.safe_load("\n".join(s.lstrip("#")[2:] for s in lines[k + 2 : k + 8]))
    assert load_config({"name": "j", "inputs": [*item, {"path": "b_20230818.tif"}]}).inputs[0].band == 1
    preflight = next(s for s in lines if s.strip().startswith("drop_bad_images:"))
    assert "true" in preflight and "warning" in preflight


# --- The sar checks, the merge's copies and the messages (mutation survivors, issue 27) ---


def _sar(**changes: object) -> dict:
    data = preset_config("sar").model_dump(mode="json", exclude_none=True)
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        section = data
        for part in path:
            section = section.setdefault(part, {})
        section[key] = value
    return data


def test_the_sar_chain_s_limits_are_said_at_load_with_the_fix() -> None:
    assert load_config(_sar()).preset == "sar"
    # a custom job may use the sar chain, and the collection's name is not case-sensitive
    assert load_config(_sar(preset="custom")).sar is not None
    assert load_config(_sar(search__collection="S1-GRD")).sar is not None
    cases = [
        (_sar(preset="ice"), r"sar: the sar section belongs to preset sar, not ice"),
        (_sar(pairs__same_orbit=False), r"pairs\.same_orbit: .* set it to true"),
        (_sar(search__collection="sentinel-2-l2a"), r"set search\.collection: sentinel-1-grd"),
        (_sar(three_d=True, dem="dem.tif"), r"three_d: .* combines tracks with sar\.combine: enu"),
    ]
    for data, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            load_config(data)


def test_deep_merge_shares_no_mutable_value_with_its_inputs() -> None:
    base = {"pairs": {"months": [6, 7]}, "tags": ["a"]}
    top = {"inputs": [{"path": "x.tif"}], "pairs": {"mode": "days"}}
    merged = deep_merge(base, top)
    assert merged == {
        "pairs": {"months": [6, 7], "mode": "days"},
        "tags": ["a"],
        "inputs": [{"path": "x.tif"}],
    }
    merged["tags"].append("b")
    merged["pairs"]["months"].append(8)
    merged["inputs"][0]["path"] = "y.tif"
    assert base == {"pairs": {"months": [6, 7]}, "tags": ["a"]}
    assert top == {"inputs": [{"path": "x.tif"}], "pairs": {"mode": "days"}}


def test_every_problem_is_one_line_naming_its_field() -> None:
    with pytest.raises(InvalidInputError) as info:
        load_config(
            {**BASE, "pairs": {"direction": "sideways"}, "matching": "fast", "inputs": [{"pathh": 1}]}
        )
    lines = str(info.value).splitlines()
    assert lines[0].startswith("config: ") and "problem(s)" in lines[0]
    body = "\n".join(lines[1:])
    assert all(line.startswith("  - ") for line in lines[1:])
    assert "  - pairs.direction: " in body and "(got 'sideways')" in body
    assert "  - matching: expected a path or a mapping of keys, got 'fast'" in body
    assert "  - inputs[0].pathh: unknown key; check the spelling" in body
    with pytest.raises(InvalidInputError, match=r"preset 'glacier' unknown; allowed: ice, slide, quake"):
        preset_config("glacier")


def test_a_config_with_local_inputs_round_trips_through_its_commented_yaml(tmp_path: Path) -> None:
    from geodeform.config import config_to_yaml

    config = load_config(
        {
            "name": "job",
            "inputs": [
                {"path": "a/B04.tif", "date": "2023-08-13"},
                {"path": "b/B04.tif", "date": "2023-09-02", "band": "red"},
            ],
        }
    )
    text = config_to_yaml(config)
    # the licence notice of Sentinel-derived results travels with every written config
    assert text.splitlines()[:2] == [
        "# geodeform job configuration (geodeform run THIS_FILE). Units and choices are in the comments.",
        "# Sentinel data: results contain modified Copernicus Sentinel data.",
    ]
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == config
    # a problem in a file is reported under the file's name
    path.write_text(text.replace("band: red", "band: [1, 2]"), encoding="utf-8")
    with pytest.raises(
        InvalidInputError, match=rf"^{re.escape(str(path))}: 2 problem\(s\)\n  - inputs\[1\]\.band"
    ):
        load_config(path)
