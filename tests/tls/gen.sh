#!/bin/sh
# SPDX-License-Identifier: MIT
# Regenerates the TLS test certificates in this directory (test-only keys:
# never use them anywhere else). Valid for ~100 years, so the committed
# files need no regeneration; run it only to change what they contain.
#   ca.pem            test CA (ca.key signs server and client)
#   server.pem/.key   CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   server2.pem/.key  as server, CN=localhost-2 (the certificate reload test
#                     swaps it in)
#   client.pem/.key   CN=asyncq-test-client, signed by ca
#   other-ca.pem      a second, unrelated CA (other-ca.key)
#   other-client.pem/.key  CN=asyncq-other-client, signed by other-ca
set -eu
cd "$(dirname "$0")"
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name cn
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days $days -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
}

leaf() { # name cn ca ext
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$tmp/$1.csr"
  printf '%s\n' "$4" >"$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$3.pem" -CAkey "$3.key" \
    -set_serial "0x$(openssl rand -hex 8)" -sha256 -days $days \
    -extfile "$tmp/$1.ext" -out "$1.pem" 2>/dev/null
}

ca ca "asyncq test CA"
ca other-ca "asyncq other test CA"
leaf server localhost ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
leaf server2 localhost-2 ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
leaf client asyncq-test-client ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
leaf other-client asyncq-other-client other-ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
chmod 644 ./*.pem ./*.key
