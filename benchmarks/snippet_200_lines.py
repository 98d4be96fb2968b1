# A realistic ~200-line snippet of the kind an agent writes: parse records, clean them, group,
# aggregate, rank, format a report. Builtins plus math only, so subset interpreters can try it.
import math

RAW = """order_id,customer,region,product,quantity,unit_price,status,day
1001,acme,north,widget,4,2.50,shipped,1
1002,globex,south,gadget,1,19.99,pending,1
1003,initech,east,widget,10,2.50,shipped,2
1004,acme,north,doohickey,2,7.25,cancelled,2
1005,umbrella,west,gadget,3,19.99,shipped,3
1006,globex,south,widget,7,2.50,shipped,3
1007,hooli,east,gizmo,1,99.00,shipped,4
1008,acme,north,gizmo,2,99.00,pending,4
1009,initech,east,doohickey,5,7.25,shipped,5
1010,umbrella,west,widget,12,2.50,shipped,5
1011,hooli,east,gadget,2,19.99,returned,6
1012,globex,south,gizmo,1,99.00,shipped,6
1013,acme,north,widget,6,2.50,shipped,7
1014,initech,east,gizmo,1,99.00,shipped,7
1015,umbrella,west,doohickey,4,7.25,pending,8
1016,hooli,east,widget,9,2.50,shipped,8
"""


def parse_csv(text):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        values = line.split(",")
        row = {}
        for key, value in zip(header, values):  # noqa: B905 - peers lack zip(strict=)
            row[key] = value
        rows.append(row)
    return rows


def to_number(value, kind):
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def clean(rows):
    cleaned = []
    problems = []
    for row in rows:
        quantity = to_number(row.get("quantity"), int)
        price = to_number(row.get("unit_price"), float)
        day = to_number(row.get("day"), int)
        if quantity is None or price is None or day is None:
            problems.append(row.get("order_id", "?"))
            continue
        cleaned.append({
            "id": int(row["order_id"]),
            "customer": row["customer"].title(),
            "region": row["region"],
            "product": row["product"],
            "quantity": quantity,
            "price": price,
            "status": row["status"],
            "day": day,
            "total": round(quantity * price, 2),
        })
    return cleaned, problems


class Summary:
    def __init__(self, name):
        self.name = name
        self.orders = 0
        self.units = 0
        self.revenue = 0.0
        self.values = []

    def add(self, order):
        self.orders += 1
        self.units += order["quantity"]
        self.revenue += order["total"]
        self.values.append(order["total"])

    def mean(self):
        return self.revenue / self.orders if self.orders else 0.0

    def stdev(self):
        if len(self.values) < 2:
            return 0.0
        mean = self.mean()
        var = sum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1)
        return math.sqrt(var)

    def as_dict(self):
        return {
            "name": self.name,
            "orders": self.orders,
            "units": self.units,
            "revenue": round(self.revenue, 2),
            "mean": round(self.mean(), 2),
            "stdev": round(self.stdev(), 2),
        }


def group_by(orders, key):
    groups = {}
    for order in orders:
        name = order[key]
        if name not in groups:
            groups[name] = Summary(name)
        groups[name].add(order)
    return groups


def rank(groups, field, top=3):
    items = [g.as_dict() for g in groups.values()]
    items.sort(key=lambda item: (-item[field], item["name"]))
    return items[:top]


def daily_series(orders, days):
    series = [0.0] * (days + 1)
    for order in orders:
        if 0 <= order["day"] <= days:
            series[order["day"]] += order["total"]
    return [round(v, 2) for v in series]


def moving_average(values, window):
    out = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        count = min(i + 1, window)
        out.append(round(total / count, 2))
    return out


def percentile(values, pct):
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def status_counts(orders):
    counts = {}
    for order in orders:
        counts[order["status"]] = counts.get(order["status"], 0) + 1
    return dict(sorted(counts.items()))


def format_table(rows, columns):
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    header = " | ".join(c.ljust(widths[c]) for c in columns)
    rule = "-+-".join("-" * widths[c] for c in columns)
    body = [" | ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([header, rule] + body)  # noqa: RUF005 - smolagents cannot run *body


def build_report(text):
    orders, problems = clean(parse_csv(text))
    shipped = [o for o in orders if o["status"] == "shipped"]
    by_customer = group_by(shipped, "customer")
    by_region = group_by(shipped, "region")
    by_product = group_by(shipped, "product")
    totals = [o["total"] for o in shipped]
    series = daily_series(shipped, 8)
    report = {
        "orders": len(orders),
        "problems": problems,
        "shipped": len(shipped),
        "revenue": round(sum(totals), 2),
        "p50": round(percentile(totals, 50), 2),
        "p90": round(percentile(totals, 90), 2),
        "status": status_counts(orders),
        "top_customers": rank(by_customer, "revenue"),
        "top_regions": rank(by_region, "revenue", top=2),
        "top_products": rank(by_product, "units"),
        "series": series,
        "trend": moving_average(series, 3),
    }
    table = format_table(report["top_customers"], ["name", "orders", "revenue", "mean"])
    return report, table


report, table = build_report(RAW)
lines = [
    f"orders: {report['orders']} (shipped {report['shipped']})",
    f"revenue: {report['revenue']:.2f}, p50 {report['p50']}, p90 {report['p90']}",
    f"status: {report['status']}",
    table,
]
summary = "\n".join(lines)
checksum = sum(ord(ch) for ch in summary) % 100003
(report["revenue"], report["top_products"][0]["name"], checksum)
