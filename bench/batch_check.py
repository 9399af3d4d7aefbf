#!/usr/bin/env python3
"""What the batch endpoint answers, normalised, for a fixed set of batches: good lines, every
kind of bad line, a resumed batch, a batch moved to other lines, no key, no credentials; then
the devices, credentials and audit entries the store holds afterwards. Ids, times and secrets
are replaced by their order of appearance, so two builds' transcripts compare with diff:

    bench/batch_check.py OLD/imprint > old.txt; bench/batch_check.py NEW/imprint > new.txt
    diff old.txt new.txt

Performance work on the batch must leave the transcript unchanged."""
import json, os, re, subprocess, sys, tempfile, time, urllib.request

imprint = sys.argv[1]
work = tempfile.mkdtemp(prefix="imprint-check-")
acct = json.loads(subprocess.check_output([imprint, "init", "--data", work + "/d", "--json"]))
token = acct["apiKey"]
log = open(work + "/serve.log", "w+")
srv = subprocess.Popen([imprint, "serve", "--data", work + "/d", "--listen", "127.0.0.1:0"], stderr=log)
url = None
for _ in range(100):
    log.seek(0)
    m = re.search(r"listening on (http\S+)", log.read())
    if m:
        url = m.group(1)
        break
    time.sleep(0.1)


def call(method, path, body=None, headers=None, raw=False):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    return status, text if raw else (json.loads(text) if text else None)


names = {}


def norm(text):
    def sub(kind):
        def f(m):
            key = (kind, m.group(0))
            if key not in names:
                names[key] = "%s%d" % (kind, sum(1 for k in names if k[0] == kind) + 1)
            return names[key]
        return f
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", sub("ID"), text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "TIME", text)
    text = re.sub(r'"secret":"[A-Za-z0-9+/=]{44}"', '"secret":"SECRET"', text)
    return text


def show(title, status, text):
    print("== %s: %d" % (title, status))
    print(norm(text.rstrip("\n")))


_, t1 = call("POST", "/api/v1/devices/templates", {"name": "Meter"})
T1 = t1["deviceTemplate"]["id"]
_, t2 = call("POST", "/api/v1/devices/templates", {"name": "Cert", "authenticationMethod": "certificate"})
T2 = t2["deviceTemplate"]["id"]
for ch in ("status", "telemetry"):
    call("POST", "/api/v1/channels/templates", {"name": ch, "entityType": "deviceTemplate", "entityId": T1,
                                                 "permission": "publish"})
call("POST", "/api/v1/devices/custom-fields", {"deviceTemplateId": T1, "name": "color", "fieldType": "string",
                                                "default": "red"})
_, o = call("POST", "/api/v1/organizations", {"name": "Plant"})
O1 = o["organization"]["id"]


def line(**kw):
    return json.dumps(kw, separators=(",", ":"))


lines_a = [
    line(deviceTemplateId=T1, serialNumber="SN-1"),
    line(deviceTemplateId=T1, serialNumber="SN-2", name="x", organizationId=O1, color="blue"),
    line(deviceTemplateId=T1, serialNumber="SN-1"),
    "not json",
    "",
    "[1]",
    line(deviceTemplateId=T1),
    line(deviceTemplateId="0190a0b0-0000-7000-8000-000000000000", serialNumber="SN-8"),
    line(deviceTemplateId=T1, serialNumber="SN-9", foo=1),
    line(deviceTemplateId=T1, serialNumber="SN-10", channels=[]),
    line(deviceTemplateId=T2, serialNumber="SN-11"),
    line(deviceTemplateId=T2, serialNumber="SN-12", csr="xx"),
    line(deviceTemplateId=T1, serialNumber="SN-13", csr="x"),
    line(deviceTemplateId=T1, serialNumber="SN-14", csr=5),
    line(deviceTemplateId=T1, serialNumber="SN-15", provisioningState="activated"),
    line(deviceTemplateId=T1, serialNumber="SN-16", id="0190a0b0-0000-7000-8000-000000000000"),
    line(deviceTemplateId=T1, serialNumber="SN-17", color=5),
    line(deviceTemplateId=T1, serialNumber="S" * 300),
    line(deviceTemplateId=T1, serialNumber="SN-19") + "\r",
    line(deviceTemplateId=T1, serialNumber="SN-20", organizationId="0190a0b0-0000-7000-8000-000000000000"),
    line(deviceTemplateId=T1, serialNumber=7),
    line(deviceTemplateId=T1, serialNumber="SN-22", accountId="0190a0b0-0000-7000-8000-000000000000"),
    line(deviceTemplateId=T1, serialNumber="SN-23", name=None, location="hall 2", purchaseDate="2026-01-02T03:04:05Z"),
    line(deviceTemplateId=T1, serialNumber="SN-24", purchaseDate="yesterday"),
    line(deviceTemplateId=T1, serialNumber="SN-25", color="green", deviceVersion="1.0"),
    '{"deviceTemplateId":"%s","serialNumber":"SN-26","serialNumber":"SN-27"}' % T1,
]
body_a = ("\n".join(lines_a) + "\n").encode()
batch = "/api/v1/devices/batch"
nd = {"Content-Type": "application/x-ndjson"}
show("A keyed, credentials", *call("POST", batch + "?credentials=true", body_a, dict(nd, **{"Idempotency-Key": "A"}), True))
show("A again (resumed)", *call("POST", batch + "?credentials=true", body_a, dict(nd, **{"Idempotency-Key": "A"}), True))
show("A at other lines", *call("POST", batch + "?credentials=true&firstLine=100", body_a,
                               dict(nd, **{"Idempotency-Key": "A"}), True))
show("A without credentials", *call("POST", batch, body_a, dict(nd, **{"Idempotency-Key": "A"}), True))
lines_b = [line(deviceTemplateId=T1, serialNumber="B-%d" % i) for i in range(5)] + ["{}"]
show("B keyed, no credentials", *call("POST", batch + "?credentials=false", ("\n".join(lines_b)).encode(),
                                      dict(nd, **{"Idempotency-Key": "B"}), True))
show("B resumed with credentials", *call("POST", batch + "?credentials=true", ("\n".join(lines_b)).encode(),
                                         dict(nd, **{"Idempotency-Key": "B"}), True))
lines_c = [line(deviceTemplateId=T1, serialNumber="C-1"), line(deviceTemplateId=T1, serialNumber="C-1"),
           line(deviceTemplateId=T1), line(deviceTemplateId=T1, name="unnamed"),
           line(deviceTemplateId=T1, name="q\"b\\s\u0001\u001f\t\n\r\b\f/\u007f\u00e9\U0001F600", color="\u2028")]
show("C no key, credentials", *call("POST", batch + "?credentials=true", ("\n".join(lines_c) + "\n").encode(), nd, True))
show("C no key, no credentials", *call("POST", batch, ("\n".join(lines_c) + "\n").encode(), nd, True))
show("bad query", *call("POST", batch + "?credentials=yes", b"{}\n", nd, True))
show("bad key", *call("POST", batch, b"{}\n", dict(nd, **{"Idempotency-Key": "\u00e9".encode().decode("latin-1")}), True))
# A group boundary: 2,500 lines, one bad line in the middle of the second group.
many = [line(deviceTemplateId=T1, serialNumber="M-%d" % i) for i in range(2500)]
many[1500] = line(deviceTemplateId=T2, serialNumber="M-1500")
st, text = call("POST", batch + "?credentials=true", ("\n".join(many) + "\n").encode(),
                dict(nd, **{"Idempotency-Key": "M"}), True)
out = [json.loads(x) for x in text.splitlines()]
print("== M: %d, %d lines, %d errors, lines in order: %s, error at %s" % (
    st, len(out), sum("error" in o for o in out), [o["line"] for o in out] == list(range(1, 2501)),
    [o["line"] for o in out if "error" in o]))
assert len({o["mqttCredential"]["secret"] for o in out if "device" in o}) == 2499

# What the store holds now.
for q in ("pageSize=1000", "provisioningState=activated&pageSize=1000", "provisioningState=defined&pageSize=1000",
          "serialNumber=SN-11", "serialNumber=SN-12", "serialNumber=M-1500", "q=SN-1&pageSize=1000"):
    st, body = call("GET", "/api/v1/devices?" + q)
    devs = body["devices"]["results"]
    show("devices?" + q, st, json.dumps({"count": body["devices"]["meta"].get("count"),
                                         "first": [d for d in devs if not d["serialNumber"] or
                                                   not d["serialNumber"].startswith("M-")]},
                                        separators=(",", ":")))
st, body = call("GET", "/api/v1/access/mqtt-credentials?pageSize=1000")
print("== credentials: %d, count %s" % (st, body["mqttCredentials"]["meta"].get("count")))
st, body = call("GET", "/api/v1/audit?pageSize=1000")
show("audit", st, json.dumps(body, separators=(",", ":")))
srv.terminate()
srv.wait()
# A sanitizer build's findings land in the server's log.
log.seek(0)
found = [l for l in log.read().splitlines() if "Sanitizer" in l or "runtime error" in l]
subprocess.call(["rm", "-rf", work])
if found:
    sys.exit("batch_check: the server reported:\n" + "\n".join(found))
