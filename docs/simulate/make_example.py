#!/usr/bin/env python3
# Writes docs/simulate/example.csv, the traffic of docs/simulate.md's worked example (seeded: the
# same file every time): three minutes of three services calling a CRM at about 3 requests per
# second in all, and a nightly-sync style burst of 25 per second from one key between 60 s and 75 s.
import random

random.seed(15)
start = 1796637600.0  # 2026-12-07T10:00:00Z
rows = []
t = 0.0
while t < 180:
    t += random.expovariate(3.0)
    rows.append((t, "key-%d" % random.randint(1, 3), random.uniform(0.08, 0.4)))
t = 60.0
while t < 75:
    t += random.expovariate(25.0)
    rows.append((t, "key-sync", random.uniform(0.1, 0.3)))
rows.sort()
with open("example.csv", "w") as out:
    out.write("timestamp,method,host,path,upstream_seconds,Authorization\n")
    for at, key, upstream in rows:
        out.write("%.3f,GET,localhost,/crm/v1/contacts,%.3f,Bearer %s\n" % (start + at, upstream, key))
