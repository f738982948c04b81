#!/usr/bin/env bash
# Ceph's S3 conformance suite (github.com/ceph/s3-tests, boto3 + pytest) against lightningstor,
# as the quickstart runs it: a report of what passes, not a gate (many tests exercise features
# lightningstor does not have — ACL grants, object lock, encryption, IAM, STS, S3 Select).
#
# Usage: S3TESTS=/path/to/s3-tests scripts/s3-tests.sh [pytest arguments…]
#   S3TESTS   a clone of ceph/s3-tests (required)
#   VENV      a Python venv with its requirements (default /tmp/s3t-venv; made when absent)
#   BIN       the ultracloud binary (default target/release/ultracloud)
#   REPORT    where the PASS/FAIL list goes (default /tmp/s3-tests-report.txt)
# TLS is not verified by the suite (its config takes only a yes/no; loopback only).
# Starts `ultracloud quickstart --keep` (as root), makes key pairs for s3-tests' three users in
# three tenants (main, alt, tenant), runs the suite's functional S3 tests, prints pass/fail
# counts per marker-free test, and stops the quickstart stack (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-./target/release/ultracloud}")
VENV=${VENV:-/tmp/s3t-venv}
REPORT=${REPORT:-/tmp/s3-tests-report.txt}
[ -n "${S3TESTS:-}" ] && [ -d "$S3TESTS/s3tests" ] || { echo "set S3TESTS to a clone of ceph/s3-tests" >&2; exit 2; }
[ -x "$BIN" ] || { echo "build first: cargo build --release -p ultracloud (or set BIN)" >&2; exit 2; }
if [ ! -x "$VENV/bin/pytest" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$S3TESTS/requirements.txt"
fi

QS=/var/lib/ultracloud/quickstart
WORK=$(mktemp -d /tmp/uc-s3-tests.XXXXXX)
cleanup() {
    "$BIN" quickstart --stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" quickstart --keep >"$WORK/quickstart.log" 2>&1 || { tail -20 "$WORK/quickstart.log" >&2; exit 1; }
export XDG_CONFIG_HOME=$WORK/cli HOME=$WORK/cli
"$BIN" login -u admin --password-file "$QS/iam/admin-password" --ca-file "$QS/tls/ca/ca.pem" >/dev/null

# key USER: a tenant and project named after it and a key pair there; "ACCESS SECRET".
key() {
    "$BIN" tenant create "s3t-$1" >/dev/null
    "$BIN" project create -t "s3t-$1" main >/dev/null
    "$BIN" s3 credentials create -t "s3t-$1" -p main --write "$WORK/$1.ini" >/dev/null
    awk -F' = ' '/aws_access_key_id/ {a=$2} /aws_secret_access_key/ {s=$2} END {print a, s}' "$WORK/$1.ini"
}
read -r MAIN_KEY MAIN_SECRET < <(key main)
read -r ALT_KEY ALT_SECRET < <(key alt)
read -r TEN_KEY TEN_SECRET < <(key tenant)

cat >"$WORK/s3tests.conf" <<CONF
[DEFAULT]
host = 127.0.0.1
port = 8790
is_secure = True
ssl_verify = False
[fixtures]
bucket prefix = s3t-{random}-
[s3 main]
display_name = main
user_id = s3t-main
email = main@example.com
api_name = us-east-1
access_key = $MAIN_KEY
secret_key = $MAIN_SECRET
[s3 alt]
display_name = alt
user_id = s3t-alt
email = alt@example.com
access_key = $ALT_KEY
secret_key = $ALT_SECRET
[s3 tenant]
display_name = tenant
user_id = s3t-tenant
email = tenant@example.com
tenant = s3t-tenant
access_key = $TEN_KEY
secret_key = $TEN_SECRET
[iam]
display_name = iam
user_id = iam
email = iam@example.com
access_key = none
secret_key = none
[iam root]
user_id = root
email = root@example.com
access_key = none
secret_key = none
[iam alt root]
user_id = altroot
email = altroot@example.com
access_key = none
secret_key = none
CONF

cd "$S3TESTS"
S3TEST_CONF=$WORK/s3tests.conf REQUESTS_CA_BUNDLE=$QS/tls/ca/ca.pem AWS_CA_BUNDLE=$QS/tls/ca/ca.pem \
    "$VENV/bin/pytest" -q -p no:cacheprovider --tb=line s3tests/functional/test_s3.py \
    -rN --junitxml="$WORK/junit.xml" "$@" | tail -5 || true
python3 - "$WORK/junit.xml" "$REPORT" <<'PY'
import collections, sys, xml.etree.ElementTree as ET
passed, failed, skipped = [], [], []
for c in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    bad = c.find("failure") if c.find("failure") is not None else c.find("error")
    if bad is not None:
        reason = (bad.get("message") or "").strip().splitlines()[:1]
        failed.append((c.get("name"), reason[0][:120] if reason else "?"))
    elif c.find("skipped") is not None:
        skipped.append(c.get("name"))
    else:
        passed.append(c.get("name"))
with open(sys.argv[2], "w") as out:
    for name in passed:
        out.write(f"PASS {name}\n")
    for name, reason in failed:
        out.write(f"FAIL {name}: {reason}\n")
print(f"s3-tests: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped (list: {sys.argv[2]})")
print("most common failure reasons:")
for reason, n in collections.Counter(r for _, r in failed).most_common(15):
    print(f"  {n:4}  {reason}")
PY
