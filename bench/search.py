"""Catalog search benchmark: the service next to the same SQL run directly, in one run.

    uv run --no-sync python bench/search.py [--services 100000] [--seconds 10] [--concurrency 8]
    uv run --no-sync python bench/search.py --reuse      # keep the seeded database of a last run

Seeds a scratch database (`krika_bench_search`, migrated with catalog's own Alembic
migrations) with `--services` services (realistic titles, tags and descriptions; 1-3 packages
each; 50 categories in a two-level tree; 1,000 providers, 2 % of them suspended; ~90 % of the
services published, the rest drafts, paused or archived; ratings on ~70 %), then:

- prints EXPLAIN (ANALYZE, BUFFERS) of representative queries and checks that none scans
  `services` sequentially;
- `direct`: the exact statements catalog.search builds, run with asyncpg (prepared, a pool of
  `--concurrency` connections), over a mix of text and filter queries;
- `service`: the same mix as `GET /catalog/search` requests to `python -m catalog` (one uvicorn
  process, as in production) from a raw keep-alive HTTP/1.1 load generator in its own process;

each at 1, 2 and `--concurrency` connections (latency, then throughput), reporting
requests/s and latency p50/p95/p99. Prints a table and writes the figures as JSON to
bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PG_SERVER = os.environ.get("KRIKA_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
DATABASE = "krika_bench_search"
ALEMBIC_INI = ROOT / "services" / "catalog" / "alembic.ini"

# --- the data ----------------------------------------------------------------------------------

TREE: dict[str, list[str]] = {
    "graphics-design": ["logo-design", "brand-identity", "illustration", "flyer-design"],
    "photography": ["wedding-photography", "product-photography", "portraits", "photo-editing"],
    "writing": ["blog-writing", "copywriting", "resume-writing", "ghostwriting"],
    "translation": ["french-translation", "yoruba-translation", "subtitles", "proofreading"],
    "programming": ["web-development", "mobile-apps", "wordpress", "data-analysis"],
    "video": ["video-editing", "animation", "intro-videos", "drone-footage"],
    "music": ["mixing-mastering", "voice-over", "jingles", "beats"],
    "marketing": ["seo", "social-media", "email-marketing", "ads-management"],
    "business": ["business-plans", "bookkeeping", "market-research", "virtual-assistant"],
    "tutoring": ["maths-tutoring", "english-lessons", "coding-lessons", "exam-prep"],
}
PHRASES: dict[str, list[str]] = {
    "logo-design": ["logo design", "minimalist logo", "3D logo", "mascot logo"],
    "brand-identity": ["brand identity", "brand style guide", "business card design"],
    "illustration": ["digital illustration", "children's book illustration", "portrait drawing"],
    "flyer-design": ["flyer design", "poster design", "menu design for your café"],
    "wedding-photography": ["wedding photography", "engagement photoshoot", "event photography"],
    "product-photography": ["product photography", "e-commerce photos", "food photography"],
    "portraits": ["portrait photography", "headshots", "family photoshoot"],
    "photo-editing": ["photo retouching", "background removal", "photo restoration"],
    "blog-writing": ["blog posts", "SEO articles", "technical writing"],
    "copywriting": ["website copywriting", "sales copy", "product descriptions"],
    "resume-writing": ["résumé writing", "CV and cover letter", "LinkedIn profile"],
    "ghostwriting": ["ghostwriting", "ebook writing", "speech writing"],
    "french-translation": ["French translation", "English to French translation"],
    "yoruba-translation": ["Yoruba translation", "Igbo translation", "Hausa translation"],
    "subtitles": ["subtitles", "video transcription", "closed captions"],
    "proofreading": ["proofreading", "copy editing", "academic editing"],
    "web-development": ["website development", "landing page", "Django backend"],
    "mobile-apps": ["Flutter app", "Android app", "iOS app development"],
    "wordpress": ["WordPress website", "WooCommerce store", "WordPress speed optimisation"],
    "data-analysis": ["data analysis", "Excel dashboards", "Power BI reports"],
    "video-editing": ["video editing", "YouTube video editing", "wedding film editing"],
    "animation": ["2D animation", "explainer video", "motion graphics"],
    "intro-videos": ["logo intro", "YouTube intro", "animated logo reveal"],
    "drone-footage": ["drone footage", "aerial photography", "real estate video"],
    "mixing-mastering": ["mixing and mastering", "vocal tuning", "podcast editing"],
    "voice-over": ["voice over", "Nigerian accent voice over", "audiobook narration"],
    "jingles": ["radio jingle", "custom jingle", "business jingle"],
    "beats": ["afrobeats instrumental", "custom beats", "amapiano beat"],
    "seo": ["SEO audit", "on-page SEO", "backlink building"],
    "social-media": ["social media management", "Instagram growth", "content calendar"],
    "email-marketing": ["email marketing", "newsletter design", "Mailchimp setup"],
    "ads-management": ["Facebook ads", "Google ads campaign", "TikTok ads"],
    "business-plans": ["business plan", "pitch deck", "financial model"],
    "bookkeeping": ["bookkeeping", "QuickBooks setup", "tax filing help"],
    "market-research": ["market research", "competitor analysis", "customer survey"],
    "virtual-assistant": ["virtual assistant", "data entry", "calendar management"],
    "maths-tutoring": ["maths tutoring", "further maths lessons", "statistics help"],
    "english-lessons": ["English lessons", "IELTS preparation", "spoken English coaching"],
    "coding-lessons": ["Python lessons", "JavaScript tutoring", "coding for kids"],
    "exam-prep": ["WAEC preparation", "JAMB tutoring", "SAT preparation"],
}
ADJECTIVES = [
    "Professional",
    "Creative",
    "Fast",
    "Affordable",
    "Modern",
    "Custom",
    "Premium",
    "Expert",
    "Unique",
    "High quality",
    "Stunning",
    "Reliable",
    "Clean",
    "Elegant",
    "Quick",
]
AUDIENCES = [
    "startups",
    "small businesses",
    "restaurants",
    "cafés",
    "churches",
    "e-commerce stores",
    "YouTubers",
    "authors",
    "schools",
    "real estate agents",
    "fashion brands",
    "NGOs",
]
SENTENCES = [
    "I deliver {phrase} that fits your brand and your budget.",
    "Over {years} years of experience with clients in Lagos, Abuja and abroad.",
    "You get unlimited communication and a final file in every format you need.",
    "Every order includes a consultation so I understand exactly what you want.",
    "My {phrase} has helped {clients} happy clients grow their business.",
    "Fast turnaround, clear communication and revisions until you are satisfied.",
    "Please message me before ordering if your project is large or urgent.",
    "I work with {tool} and follow current best practices.",
]
TOOLS = ["Adobe Illustrator", "Photoshop", "Figma", "Canva", "Premiere Pro", "Python", "Excel"]
PACKAGE_NAMES = ["Basic", "Standard", "Premium"]


def _description(rng: random.Random, phrase: str) -> str:
    chosen = rng.sample(SENTENCES, rng.randint(2, 4))
    return " ".join(
        s.format(
            phrase=phrase,
            years=rng.randint(2, 15),
            clients=rng.randint(20, 900),
            tool=rng.choice(TOOLS),
        )
        for s in chosen
    )


async def seed(url: str, services: int) -> dict[str, Any]:
    """Categories, providers, services with packages; returns what the query mix needs."""
    import asyncpg

    rng = random.Random(42)
    conn = await asyncpg.connect(url)
    now = dt.datetime.now(dt.UTC)
    try:
        categories: list[tuple[Any, ...]] = []
        leaf_of: dict[str, uuid.UUID] = {}
        slugs: dict[str, uuid.UUID] = {}
        for root, children in TREE.items():
            root_id = uuid.uuid4()
            categories.append((root_id, root, root.replace("-", " ").title(), None, now))
            slugs[root] = root_id
            for child in children:
                child_id = uuid.uuid4()
                categories.append((child_id, child, child.replace("-", " ").title(), root_id, now))
                leaf_of[child] = child_id
                slugs[child] = child_id
        await conn.copy_records_to_table(
            "categories",
            records=categories,
            columns=["id", "slug", "name", "parent_id", "created_at"],
        )
        providers = [uuid.uuid4() for _ in range(1000)]
        suspended = set(rng.sample(providers, 20))
        await conn.copy_records_to_table(
            "providers",
            records=[(p, "approved", now, p in suspended, 1, now) for p in providers],
            columns=[
                "user_id",
                "kyc_status",
                "kyc_at",
                "suspended",
                "access_version",
                "updated_at",
            ],
        )
        rows: list[tuple[Any, ...]] = []
        packages: list[tuple[Any, ...]] = []
        leaves = list(leaf_of)
        for _ in range(services):
            leaf = rng.choice(leaves)
            phrase = rng.choice(PHRASES[leaf])
            title = f"{rng.choice(ADJECTIVES)} {phrase}"
            if rng.random() < 0.5:
                title += f" for {rng.choice(AUDIENCES)}"
            title = title[:120]
            tags = list(dict.fromkeys([leaf.split("-")[0], *phrase.lower().split()[:2]]))[:10]
            tags = [t[:30] for t in tags]
            sid = uuid.uuid4()
            provider = rng.choice(providers)
            status = rng.choices(
                ["published", "paused", "draft", "archived"], weights=[90, 4, 3, 3]
            )[0]
            base = int(rng.lognormvariate(10.3, 0.8)) * 100  # kobo, ~30,000 NGN median
            count = rng.randint(1, 3)
            prices = sorted(base * (i + 1) + rng.randint(0, 500) * 100 for i in range(count))
            days = sorted((rng.randint(1, 14) for _ in range(count)), reverse=True)
            for i in range(count):
                packages.append(
                    (
                        uuid.uuid4(),
                        sid,
                        i,
                        PACKAGE_NAMES[i],
                        f"{PACKAGE_NAMES[i]} {phrase}",
                        max(100, prices[i]),
                        "NGN",
                        days[i],
                        rng.randint(0, 5),
                    )
                )
            reviews = rng.randint(1, 200) if rng.random() < 0.7 else 0
            average = round(rng.uniform(3.0, 5.0), 2) if reviews else 0.0
            created = now - dt.timedelta(days=rng.uniform(1, 400))
            published = None
            if status != "draft":
                published = created + dt.timedelta(hours=rng.uniform(0, 48))
            rows.append(
                (
                    sid,
                    provider,
                    leaf_of[leaf],
                    title,
                    _description(rng, phrase),
                    tags,
                    "[]",
                    status,
                    provider in suspended,
                    max(100, prices[0]),
                    "NGN",
                    days[-1],
                    round(average * reviews),
                    reviews,
                    average,
                    1,
                    created,
                    created,
                    published,
                )
            )
        columns = [
            "id",
            "provider_id",
            "category_id",
            "title",
            "description",
            "tags",
            "faq",
            "status",
            "provider_suspended",
            "starting_price",
            "currency",
            "fastest_delivery_days",
            "rating_sum",
            "rating_count",
            "rating_average",
            "revision",
            "created_at",
            "updated_at",
            "published_at",
        ]
        from decimal import Decimal

        rows = [(*r[:14], Decimal(str(r[14])), *r[15:]) for r in rows]
        for start in range(0, len(rows), 10_000):
            await conn.copy_records_to_table(
                "services", records=rows[start : start + 10_000], columns=columns
            )
        await conn.copy_records_to_table(
            "packages",
            records=packages,
            columns=[
                "id",
                "service_id",
                "position",
                "name",
                "description",
                "price",
                "currency",
                "delivery_days",
                "revisions",
            ],
        )
        await conn.execute("VACUUM ANALYZE services")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"slugs": list(slugs), "providers": [str(p) for p in providers]}


async def existing(url: str) -> dict[str, Any] | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(url)
    except Exception:
        return None
    try:
        count = await conn.fetchval("SELECT count(*) FROM services")
        slugs = [r[0] for r in await conn.fetch("SELECT slug FROM categories")]
        providers = [str(r[0]) for r in await conn.fetch("SELECT user_id FROM providers")]
    except Exception:
        return None
    finally:
        await conn.close()
    return {"count": count, "slugs": slugs, "providers": providers}


# --- the query mix -----------------------------------------------------------------------------


def query_mix(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Search parameters as a client sends them: text, filters, sorts, one second page."""
    rng = random.Random(7)
    provider = rng.choice(data["providers"])
    return [
        {"q": "logo design"},
        {"q": "photgraphy"},  # typo
        {"q": "wedding", "max_price": 5_000_000},
        {"q": "cafe"},  # accent
        {"q": "transl", "sort": "price_asc"},  # prefix
        {"q": "seo", "min_rating": "4.5"},
        {"category": "photography", "sort": "price_asc"},
        {"category": "logo-design", "min_rating": "4", "sort": "rating"},
        {"min_price": 2_000_000, "max_price": 4_000_000, "sort": "price_asc"},
        {"max_delivery_days": 2, "sort": "newest"},
        {"sort": "newest"},
        {"q": "video editing", "category": "video", "sort": "relevance"},
        {"provider_id": provider},
        {"category": "writing", "max_delivery_days": 3, "sort": "price_desc"},
    ]


def to_search_query(params: dict[str, Any]) -> Any:
    from decimal import Decimal

    from catalog.search import SearchQuery

    values = dict(params)
    if "min_rating" in values:
        values["min_rating"] = Decimal(values["min_rating"])
    if "provider_id" in values:
        values["provider_id"] = uuid.UUID(values["provider_id"])
    return SearchQuery(**values)


_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def asyncpg_statement(params: dict[str, Any]) -> tuple[str, list[Any]]:
    """catalog.search's statement for these parameters, with $n placeholders."""
    from catalog.search import build

    sql, values, _ = build(to_search_query(params))
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), [values[n] for n in names]


async def add_second_page(url: str, mix: list[dict[str, Any]]) -> None:
    """A cursor query: the second page of the first price_asc query of the mix."""
    import asyncpg

    from catalog.search import build, search  # noqa: F401 - same module the service runs

    first = next(p for p in mix if p.get("sort") == "price_asc")
    sql, args = asyncpg_statement({**first, "limit": 20})
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(sql, *args)
    finally:
        await conn.close()
    from krika_common.pagination import encode_cursor

    last = rows[19]
    mix.append(
        {**first, "cursor": encode_cursor("price_asc", int(last["sort_value"]), str(last["id"]))}
    )


# --- measuring ---------------------------------------------------------------------------------


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    latencies = sorted(latencies)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


async def direct_load(url: str, mix: list[dict[str, Any]], connections: int, seconds: float) -> Any:
    import asyncpg

    statements = [asyncpg_statement({**p, "limit": 20}) for p in mix]
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    latencies: list[float] = []
    clock = time.perf_counter
    try:
        for sql, args in statements:  # warm: prepare every statement on every connection
            for _ in range(connections):
                await pool.fetch(sql, *args)

        async def client(offset: int, stop_at: float) -> None:
            i = offset
            async with pool.acquire() as conn:
                while clock() < stop_at:
                    sql, args = statements[i % len(statements)]
                    i += 1
                    start = clock()
                    await conn.fetch(sql, *args)
                    latencies.append(clock() - start)

        started = clock()
        await asyncio.gather(*(client(i, started + seconds) for i in range(connections)))
        elapsed = clock() - started
    finally:
        await pool.close()
    return summary(latencies, elapsed, 0)


async def _http_client(
    host: str, port: int, requests: list[bytes], offset: int, stop_at: float, latencies: list[float]
) -> int:
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    i = offset
    try:
        while clock() < stop_at:
            request = requests[i % len(requests)]
            i += 1
            start = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if match is None:
                raise RuntimeError("no Content-Length")
            await reader.readexactly(int(match.group(1)))
            latencies.append(clock() - start)
            if status != 200:
                errors += 1
    finally:
        writer.close()
    return errors


async def _service_load(port: int, paths: list[str], connections: int, seconds: float) -> Any:
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() for p in paths]
    warm: list[float] = []
    await _http_client("127.0.0.1", port, requests, 0, time.perf_counter() + 1.0, warm)
    latencies: list[float] = []
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(
            _http_client("127.0.0.1", port, requests, i, started + seconds, latencies)
            for i in range(connections)
        )
    )
    return summary(latencies, time.perf_counter() - started, sum(errors))


def run_service_load(port: int, paths_json: str, connections: int, seconds: float) -> None:
    """Entry point of the load-generator process: prints its figures as JSON."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    print(
        json.dumps(asyncio.run(_service_load(port, json.loads(paths_json), connections, seconds)))
    )


def service_load(port: int, paths: list[str], connections: int, seconds: float) -> Any:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            str(port),
            json.dumps(paths),
            str(connections),
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(url: str, port: int, pool: int, files: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CATALOG_DATABASE_URL": url,
        "CATALOG_PORT": str(port),
        "CATALOG_DB_POOL_SIZE": str(pool),
        "CATALOG_LOG_LEVEL": "WARNING",
        "CATALOG_STORAGE_URL": f"file://{files}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "catalog"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the catalog service did not come up")


async def explain(url: str, mix: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    found = []
    try:
        for params in mix:
            sql, args = asyncpg_statement({**params, "limit": 20})
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            plan = "\n".join(r[0] for r in rows)
            seq = "Seq Scan on services" in plan
            found.append({"params": params, "seq_scan_on_services": seq, "plan": plan})
    finally:
        await conn.close()
    return found


def path_of(params: dict[str, Any]) -> str:
    return "/catalog/search?" + urlencode({**params, "limit": 20})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        run_service_load(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--reuse", action="store_true", help="keep a seeded database")
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "services" / "catalog" / "src"))
    from krika_common.testing.databases import alembic_upgrade, create_database, drop_database

    url = f"{PG_SERVER}/{DATABASE}"
    pg_url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    data = asyncio.run(existing(pg_url)) if args.reuse else None
    if data is None or data["count"] != args.services:
        asyncio.run(drop_database(PG_SERVER, DATABASE))
        asyncio.run(create_database(PG_SERVER, DATABASE))
        alembic_upgrade(ALEMBIC_INI, url)
        started = time.perf_counter()
        data = asyncio.run(seed(pg_url, args.services))
        print(f"seeded {args.services} services in {time.perf_counter() - started:.1f}s")
    mix = query_mix(data)
    asyncio.run(add_second_page(pg_url, mix))

    plans = asyncio.run(explain(pg_url, mix))
    print("\n== EXPLAIN (ANALYZE, BUFFERS) ==")
    for i, found in enumerate(plans):
        flag = (
            "SEQ SCAN ON services!" if found["seq_scan_on_services"] else "no seq scan on services"
        )
        first = found["plan"].splitlines()
        execution = next((line for line in first if "Execution Time" in line), "")
        print(f"-- {found['params']}: {flag}; {execution.strip()}")
        if args.plans or i < 3 or found["seq_scan_on_services"]:
            print("   " + "\n   ".join(first))
    seq_scans = [p["params"] for p in plans if p["seq_scan_on_services"]]

    results: dict[str, Any] = {}
    levels = sorted({1, 2, args.concurrency})
    for connections in levels:
        results[f"direct/{connections}"] = asyncio.run(
            direct_load(pg_url, mix, connections, args.seconds)
        )
    with tempfile.TemporaryDirectory() as files:
        port = free_port()
        service = start_service(url, port, args.concurrency, files)
        try:
            paths = [path_of(p) for p in mix]
            for connections in levels:
                results[f"service/{connections}"] = service_load(
                    port, paths, connections, args.seconds
                )
        finally:
            service.terminate()
            service.wait(10)

    print(
        f"\n== {args.services} services, {len(mix)} queries in the mix, "
        f"{args.seconds:.0f}s per figure, {os.cpu_count()} CPUs =="
    )
    head = ("leg", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors")
    print(f"{head[0]:<10} " + " ".join(f"{h:>8}" for h in head[1:]))
    for name, r in results.items():
        leg, conns = name.split("/")
        print(
            f"{leg:<10} {conns:>8} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['errors']:>8}"
        )
    ratio = (
        results[f"service/{args.concurrency}"]["rps"] / results[f"direct/{args.concurrency}"]["rps"]
    )
    p95 = results[f"service/{args.concurrency}"]["p95_ms"]
    print(f"\nservice throughput = {ratio:.0%} of direct SQL's (target >= 50%)")
    print(
        f"service p95 at {args.concurrency} connections = {p95:.1f} ms (target <= 30 ms); "
        f"at 2 = {results['service/2']['p95_ms']:.1f} ms; "
        f"at 1 = {results['service/1']['p95_ms']:.1f} ms"
    )
    print("plans without a seq scan on services:", "all" if not seq_scans else f"NOT {seq_scans}")

    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"search-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "services": args.services,
                "seconds": args.seconds,
                "concurrency": args.concurrency,
                "results": results,
                "ratio": ratio,
                "plans": plans,
            },
            indent=2,
            default=str,
        )
    )
    print(f"figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
