"""The plan report's "Cost beyond storage" section (see planning/costs.py for how each figure is counted)."""

from __future__ import annotations

from migrate import markdown as md
from migrate.planning.estimate import format_money


def cost_section(s: dict) -> list[str]:
    c = s["costs"]
    p = c["prices"]
    out = ["## Cost beyond storage", ""]
    out.append(
        f"One-time: **{format_money(c['run_and_verify_cost'])}** to run and verify this wave; a deep verify of every"
        f" object would add {format_money(c['deep_verify_all_cost'])} (`--deep 5%` costs 5% of that). Prices:"
        f" {p['source']} ({', '.join(p['pages'])}); override them in `[prices]`."
    )
    if c["gcs_class_a"]:
        out += ["", "**GCS class A operations**", ""]
        out += md.table(
            ["Class", "Small files", "Resumable", "Composite (parts + composes)", "Verify list pages", "Ops", "Cost"],
            [
                [
                    sc,
                    md.num(a["simple_uploads"]),
                    md.num(a["resumable_uploads"]),
                    f"{md.num(a['composite_uploads'])} ({md.num(a['part_inserts'])} + {md.num(a['composes'])})",
                    md.num(a["verify_list_pages"]),
                    md.num(a["operations"]),
                    f"{format_money(a['cost'])} at ${a['price_per_1000']:g}/1,000",
                ]
                for sc, a in c["gcs_class_a"].items()
            ],
            right=(1, 2, 3, 4, 5, 6),
        )
        paths = [f"`{b}`: {v['path']} ({v['why']})" for b, v in c["upload_paths"].items()]
        out += ["", "Large files per bucket (from `[targets]`, what terraform/ creates): " + "; ".join(paths) + "."]
    ps = c["pubsub"]
    if ps["messages"]:
        out += ["", "**Pub/Sub throughput** (publish, then the verification subscription's delivery)", ""]
        out += md.table(
            ["Messages", "Publish requests", "Message bytes", "Billable bytes, each way", "Cost"],
            [
                [
                    md.num(ps["messages"]),
                    md.num(ps["publish_requests"]),
                    md.nbytes(ps["message_bytes"]),
                    md.nbytes(ps["billable_publish_bytes"]),
                    f"{format_money(ps['cost'])} at ${ps['price_per_tib']:g}/TiB",
                ]
            ],
            right=(0, 1, 2, 3, 4),
        )
        out += [
            "",
            f"Each request is billed at least 1,000 bytes; attributes, timestamp and message id are counted as"
            f" {ps['message_overhead_bytes']} bytes per message. The first 10 GiB a month are free.",
        ]
        if "cost_max_one_message_per_request" in ps:
            out.append(
                "With ordering keys a request carries one key: if every keyed message went alone, up to"
                f" {format_money(ps['cost_max_one_message_per_request'])}."
            )
    if c["deep_verify_all"]:
        out += ["", "**Deep verify of every object** (`verify --deep 100%`)", ""]
        out += md.table(
            ["Class", "Objects", "GiB read", "Class B", "Retrieval fee", "Cost"],
            [
                [
                    sc,
                    md.num(d["objects"]),
                    f"{d['gib']:,.3f}",
                    format_money(d["class_b_cost"]),
                    format_money(d["retrieval_cost"]),
                    format_money(d["cost"]),
                ]
                for sc, d in c["deep_verify_all"].items()
            ],
            right=(1, 2, 3, 4, 5),
        )
    return out + [""]
