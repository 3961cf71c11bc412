"""plans/<name>.md: the human review of a plan. A pure function of the plan document."""

from __future__ import annotations

from migrate import markdown as md
from migrate.names import dead_letter_topic, verification_subscription
from migrate.plan import SKIP_REASONS
from migrate.planning.estimate import format_money, format_seconds
from migrate.units import format_bytes

ANOMALY_CODES = ("anomaly", "rejected-name", "symlink", "anomalous-log")


def _short(text: str, limit: int = 100) -> str:
    """Keep both ends of a very long path readable."""
    if len(text) <= limit:
        return text
    keep = (limit - 1) // 2
    return text[:keep] + "…" + text[-keep:]


def render_report(doc: dict) -> str:
    """Markdown for a plan document (the content of <name>.plan.json)."""
    from migrate.planning.cost_report import cost_section

    s = doc["summary"]
    lines: list[str] = [f"# Migration plan `{doc['name']}`", ""]
    lines += _overview(doc, s)
    lines += _catalog(s)
    lines += _storage(s)
    lines += _listeners(s)
    lines += _skipped(s)
    lines += _anomalies(s)
    lines += _estimates(s)
    lines += cost_section(s)
    lines += _targets(doc, s)
    lines += _next_steps(doc)
    return "\n".join(lines).rstrip("\n") + "\n"


def _overview(doc: dict, s: dict) -> list[str]:
    o, e, k = s["objects"], s["events"], s["skipped"]
    out = [
        f"Plan id `{doc['plan_id']}` for project `{doc['project']}`, from inventory snapshot {doc['snapshot_id']}"
        f" (config digest `{doc['config_digest']}`, conflict policy **{s['conflicts']['policy']}**).",
        "",
        *md.table(
            ["", "Files", "Bytes", "Batches"],
            [
                ["Objects to copy", md.num(o["files"]), md.nbytes(o["bytes"]), md.num(o["batches"])],
                [
                    "Listener logs to replay",
                    md.num(e["files"]),
                    md.nbytes(e["bytes"]) + f" in {md.num(e['events'])} events",
                    md.num(e["batches"]),
                ],
                [
                    "Already in the destination",
                    md.num(s["already_migrated"]["files"]),
                    md.nbytes(s["already_migrated"]["bytes"]),
                    "",
                ],
                ["Skipped for other reasons", md.num(k["not_done"]["files"]), md.nbytes(k["not_done"]["bytes"]), ""],
            ],
            right=(1, 2, 3),
        ),
        "",
    ]
    if s["warnings"]:
        out += ["**Warnings**", ""] + [f"- {md.cell(w)}" for w in s["warnings"]] + [""]
    return out


def _catalog(s: dict) -> list[str]:
    if not s["catalog_sources"]:
        return []
    rows = []
    for src in s["catalog_sources"]:
        rows.append(
            [
                src["name"],
                md.code(src["root"]),
                md.code(f"gs://{src['bucket']}/{src['prefix']}"),
                src["storage_class"],
                md.num(src["inventoried"]["files"]),
                md.num(src["planned"]["files"]),
                md.nbytes(src["planned"]["bytes"]),
                md.num(src["already_migrated"]["files"]),
                md.num(src["skipped"]["files"]),
            ]
        )
    out = ["## Catalog sources", ""]
    out += md.table(
        [
            "Source",
            "Root",
            "Destination",
            "Class",
            "Inventoried",
            "To copy",
            "Bytes to copy",
            "Already there",
            "Skipped",
        ],
        rows,
        right=(4, 5, 6, 7, 8),
    )
    out += ["", "### By bucket", ""]
    out += md.table(
        ["Bucket", "Exists", "Objects listed", "To copy", "Bytes to copy"],
        [
            [
                md.code(b["bucket"]),
                "yes" if b["exists"] else "**no**",
                md.num(b["listed_objects"]),
                md.num(b["files"]),
                md.nbytes(b["bytes"]),
            ]
            for b in s["buckets"]
        ],
        right=(2, 3, 4),
    )
    o = s["objects"]
    out += [
        "",
        f"Batches: {md.num(o['batches'])}; the largest holds {md.num(o['largest_batch_files'])} files /"
        f" {md.nbytes(o['largest_batch_bytes'])}; {md.num(o['files_over_batch_max_bytes'])} file(s) exceed"
        " `batch_max_bytes` and travel alone.",
    ]
    cmp_ = s["compare"]
    if cmp_["by"] == "crc32c":
        out.append("Objects already in a bucket were compared by size and CRC32C.")
    else:
        out.append(
            f"**{md.num(cmp_['unhashed_files'])} file(s) were inventoried without `--hash`**: objects already in a"
            f" bucket were compared by size only ({md.num(cmp_['size_only_matches'])} matched that way)."
        )
    return out + [""]


def _storage(s: dict) -> list[str]:
    if not s["storage_classes"]:
        return []
    rows = [
        [
            sc,
            md.num(c["files"]),
            md.nbytes(c["bytes"]),
            md.nbytes(c["stored_bytes"]),
            f"${c['price_gib_month']:.4f}",
            format_money(c["monthly_cost"]),
        ]
        for sc, c in s["storage_classes"].items()
    ]
    rows.append(["**Total**", "", "", "", "", f"**{format_money(s['estimates']['monthly_storage_cost'])}**"])
    out = ["## Storage classes and monthly cost", ""]
    out += md.table(
        ["Class", "To copy", "Bytes to copy", "Stored after this wave", "Per GiB-month", "Per month"],
        rows,
        right=(1, 2, 3, 4, 5),
    )
    return out + ["", "Stored bytes include objects already migrated. Prices come from `[prices]` in the config.", ""]


def _listeners(s: dict) -> list[str]:
    if not s["listener_sources"]:
        return []
    rows = [
        [
            src["name"],
            md.code(src["topic"]),
            src["format"],
            f"{md.num(src['planned_files'])} of {md.num(src['log_files'])}",
            md.num(src["events"]),
            md.nbytes(src["event_bytes"]),
            md.num(src["malformed"]),
            md.num(src["oversized"]),
        ]
        for src in s["listener_sources"]
    ]
    out = ["## Listener logs to Pub/Sub", ""]
    out += md.table(
        [
            "Listener",
            "Topic",
            "Format",
            "Log files to replay",
            "Events",
            "Payload bytes",
            "Malformed lines",
            "Oversized",
        ],
        rows,
        right=(3, 4, 5, 6, 7),
    )
    e = s["events"]
    out += [
        "",
        f"One publish batch per log file; about {md.num(e['publish_requests'])} publish requests. Malformed and"
        " oversized lines go to the quarantine file, not to Pub/Sub.",
    ]
    if s["malformed_examples"]:
        out += ["", "First malformed lines:", ""]
        out += md.table(
            ["Listener", "File", "Line", "Reason"],
            [[m["source"], md.code(m["path"]), m["line"], m["reason"]] for m in s["malformed_examples"]],
            right=(2,),
        )
    return out + [""]


def _skipped(s: dict) -> list[str]:
    k = s["skipped"]
    out = ["## Skipped", ""]
    if not k["files"]:
        return out + ["Nothing is skipped.", ""]
    out += md.table(
        ["Reason", "Files", "Bytes", "Meaning"],
        [
            [md.code(code), md.num(v["files"]), md.nbytes(v["bytes"]), v["description"]]
            for code, v in k["by_reason"].items()
        ],
        right=(1, 2),
    )
    out += ["", "The full list with a reason per file is in the `.skipped.jsonl` file next to this report.", ""]
    for code, rows in s["examples"].items():
        if code in ANOMALY_CODES:
            continue
        out += _examples(code, rows, k["by_reason"][code]["files"])
    return out


def _examples(code: str, rows: list[dict], total: int) -> list[str]:
    more = f" (first {len(rows)} of {md.num(total)})" if total > len(rows) else ""
    out = [f"**{SKIP_REASONS[code]}**{more}", ""]
    out += md.table(
        ["Source", "Path", "Size", "Detail"],
        [[r["source"], md.code(_short(r["relpath"])), md.nbytes(r["size"]), r["detail"]] for r in rows],
        right=(2,),
    )
    return out + [""]


def _anomalies(s: dict) -> list[str]:
    out = ["## Anomalies and names GCS would reject", ""]
    found = [code for code in ANOMALY_CODES if code in s["examples"]]
    if not found:
        return out + ["None.", ""]
    for code in found:
        out += _examples(code, s["examples"][code], s["skipped"]["by_reason"][code]["files"])
    return out


def _estimates(s: dict) -> list[str]:
    est = s["estimates"]
    rate = est["bandwidth_bytes_per_s"]
    out = ["## Estimates", ""]
    out += md.table(
        ["", "Estimate", "Assumption"],
        [
            [
                "Copy objects",
                format_seconds(est["copy_seconds"]),
                f"{format_bytes(rate)}/s ({est['bandwidth_basis']}), plus {est['per_object_seconds'] * 1000:.0f} ms"
                f" per object over {est['workers']} workers",
            ],
            ["Publish events", format_seconds(est["publish_seconds"]), est["publish_basis"]],
            ["Monthly storage", format_money(est["monthly_storage_cost"]), "GiB-month prices per storage class"],
            ["Run and verify, once", format_money(est["run_and_verify_cost"]), "GCS class A operations, Pub/Sub"],
            ["Deep verify of every object", format_money(est["deep_verify_all_cost"]), "class B reads, retrieval"],
        ],
    )
    return out + [""]


def _targets(doc: dict, s: dict) -> list[str]:
    t = doc["targets"]
    exists = {b["bucket"]: b["exists"] for b in s["buckets"]}
    classes = doc.get("bucket_storage_classes", {})
    out = ["## Target resources that must exist", ""]
    if t["buckets"]:
        out += md.table(
            ["Bucket", "Default class", "Exists now"],
            [[md.code(b), classes.get(b, ""), "yes" if exists.get(b) else "**no**"] for b in t["buckets"]],
        )
        out.append("")
    if t["topics"]:
        out += md.table(
            ["Topic", "Verification subscription", "Dead-letter topic"],
            [[md.code(x), md.code(verification_subscription(x)), md.code(dead_letter_topic(x))] for x in t["topics"]],
        )
        out.append("")
    out.append(
        f"Plus the service account `{doc.get('service_account_id', 'migrate-transfer')}` with object create/read on"
        " these buckets, publish on these topics and subscribe on the verification subscriptions."
    )
    return out + [""]


def _next_steps(doc: dict) -> list[str]:
    name = doc["name"]
    return [
        "## Next steps",
        "",
        f"1. Review this report and `{name}.skipped.jsonl`.",
        f"2. Create the targets: `terraform apply -var-file={name}.tfvars.json` (see `terraform/examples/migration`).",
        f"3. `migrate run --plan {name}.plan.json`, then `migrate verify --plan {name}.plan.json`.",
    ]
