#!/usr/bin/env bash
# Generates a PKI for Seam in DIR (private keys stay there; never commit them):
#   ca.pem/.key          CA that signs the server and the edge clients
#   server.pem/.key      server certificate for localhost and 127.0.0.1
#   client.pem/.key      edge client "edge-1", signed by ca
#   rogue.pem/.key       client signed by another CA (other-ca.pem)
#   expired.pem/.key     client signed by ca, validity ended in 2020
#   NAME.pem/.key        one more client per --client NAME (subject CN=NAME)
# Every certificate carries keyUsage and extendedKeyUsage, so the chain passes
# `openssl verify -x509_strict`. --add-client signs one more client with the CA
# already in DIR, touching nothing else (docs/deploy.md).
# Usage: scripts/gen-certs.sh [--client NAME]... DIR [SERVER_NAME]
#        scripts/gen-certs.sh --add-client DIR NAME
set -euo pipefail
usage="usage: scripts/gen-certs.sh [--client NAME]... DIR [SERVER_NAME]
       scripts/gen-certs.sh --add-client DIR NAME
Writes a test PKI into DIR (created if missing): ca, server (SERVER_NAME, default
localhost, plus localhost and 127.0.0.1), client edge-1, rogue (another CA) and
expired, and NAME.pem/NAME.key (CN=NAME) for each --client NAME.
--add-client signs NAME.pem/NAME.key with the CA already in DIR (ca.pem, ca.key).
Needs openssl."
clients=() add=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) echo "$usage"; exit 0 ;;
    --client | --add-client)
      [ $# -ge 2 ] || { echo "gen-certs.sh: $1 needs a value" >&2; echo "$usage" >&2; exit 2; }
      if [ "$1" = --client ]; then clients+=("$2"); shift 2; else add=yes; shift; fi ;;
    -*) echo "gen-certs.sh: unknown option '$1'" >&2; echo "$usage" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
(($# <= 2)) || { echo "gen-certs.sh: too many arguments" >&2; echo "$usage" >&2; exit 2; }
for c in "${clients[@]}" ${add:+"${2:-}"}; do
  [[ "$c" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    { echo "gen-certs.sh: client name '$c' must be letters, digits, '.', '_' or '-'" >&2; exit 2; }
  case "$c" in ca | other-ca | server | client | rogue | expired)
    echo "gen-certs.sh: client name '$c' would overwrite the file of the same name" >&2; exit 2 ;;
  esac
done
dir=$1
name=${2:-localhost}
if [ -n "$add" ]; then
  [ $# -eq 2 ] || { echo "gen-certs.sh: --add-client needs DIR and NAME" >&2; exit 2; }
  [ -f "$dir/ca.pem" ] && [ -f "$dir/ca.key" ] ||
    { echo "gen-certs.sh: '$dir' holds no ca.pem and ca.key to sign with" >&2; exit 1; }
  [ ! -e "$dir/$2.pem" ] || { echo "gen-certs.sh: '$dir/$2.pem' exists; not overwriting it" >&2; exit 1; }
fi
mkdir -p "$dir"
cd "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
make_ca() {
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "/CN=$2" -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
}
sign() {  # sign NAME CN CA EXT
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf '%b\n' "$4" "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 365 -sha256 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

if [ -n "$add" ]; then
  sign "$name" "$name" ca "extendedKeyUsage=clientAuth"
  rm -f ca.srl
  echo "seam: client certificate $dir/$name.pem (CN=$name) signed by $dir/ca.pem"
  exit 0
fi

make_ca ca "Seam Test CA"
make_ca other-ca "Other CA"
san="DNS:$name"
[ "$name" = localhost ] || san="$san,DNS:localhost"
sign server "$name" ca "subjectAltName=$san,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
sign client edge-1 ca "extendedKeyUsage=clientAuth"
sign rogue edge-rogue other-ca "extendedKeyUsage=clientAuth"
for c in "${clients[@]}"; do sign "$c" "$c" ca "extendedKeyUsage=clientAuth"; done

# An expired client certificate needs explicit dates: `openssl ca` takes them.
key expired.key
openssl req -new -key expired.key -subj "/CN=edge-expired" -out expired.csr 2>/dev/null
: > index.txt
echo 1000 > serial
cat > ca.cnf <<CNF
[ ca ]
default_ca = seam
[ seam ]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = none
[ any ]
commonName = supplied
[ client ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200201000000Z -extensions client -notext 2>/dev/null
rm -f expired.csr index.txt* serial* ca.cnf 1000.pem ca.srl other-ca.srl
echo "seam: certificates written to $dir"
