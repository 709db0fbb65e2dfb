#!/usr/bin/env bash
# Makes a local CA and certificates it signs, as the PEM files Sluice reads
# (ssl.ca.location, ssl.certificate.location, ssl.key.location).
#
#   scripts/gen-certs.sh [--dir DIR] [--days N] NAME[=SAN,SAN...] ...
#
# Each NAME gets DIR/NAME.pem and DIR/NAME.key: CN=NAME, valid for servers and
# clients (mTLS), for `localhost`, 127.0.0.1 and the SANs given (host names or
# IP addresses; `*.name` wildcards work). The CA (DIR/ca.pem, DIR/ca.key) is
# made on the first run and reused, so certificates made later chain to it.
# An existing NAME is issued again (a rotation: services reload it).
#
# Examples:
#   scripts/gen-certs.sh --dir certs node admin            # a standalone node
#   scripts/gen-certs.sh --dir certs broker-1=broker-1 broker-2=broker-2 ...
#   scripts/gen-certs.sh --dir certs broker='*.sluice-broker.sluice.svc.cluster.local'
set -euo pipefail

dir=certs
days=825
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "gen-certs: unknown flag $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
if [ "${#names[@]}" -eq 0 ]; then
  echo "gen-certs: name at least one certificate (e.g. node admin); --help explains" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "gen-certs: needs openssl (apt-get install openssl)" >&2; exit 1; }

mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 -subj "/CN=Sluice local CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 644 "$dir/ca.pem"
  echo "gen-certs: made the CA: $dir/ca.pem (keep $dir/ca.key private)"
fi

for spec in "${names[@]}"; do
  name="${spec%%=*}"
  extra=""
  [ "$spec" != "$name" ] && extra="${spec#*=}"
  san="DNS:localhost,IP:127.0.0.1"
  IFS=',' read -r -a hosts <<< "$extra"
  for h in "${hosts[@]}"; do
    [ -z "$h" ] && continue
    if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then san+=",IP:$h"; else san+=",DNS:$h"; fi
  done
  ext=$(mktemp)
  printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/$name.key.new" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$ext" \
    -out "$dir/$name.pem.new" 2>/dev/null
  rm -f "$ext" "$dir/$name.csr"
  chmod 644 "$dir/$name.pem.new"
  # The key first, then the certificate: a service polling mid-way sees a
  # pair that does not match, keeps the old one and reloads at its next look.
  mv "$dir/$name.key.new" "$dir/$name.key"
  mv "$dir/$name.pem.new" "$dir/$name.pem"
  echo "gen-certs: $dir/$name.pem and $dir/$name.key (CN=$name; $san)"
done
