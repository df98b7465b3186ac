//! The template cache of the `initdb` source on real PostgreSQL: miss then hit, damaged and
//! stale templates rebuilt, concurrent starts sharing one cache, the off switch, and a copied
//! PGDATA identical to an `initdb` one.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::util;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use compute_spec::exit_code;
use pg_test_support::{free_tcp_port, TestDir};

/// Runs the stage on a fresh document for `pgdata` with `args`; the `template` outcome.
fn prepare(pgdata: &Path, args: &[&str]) -> String {
    let document = util::document(pgdata, port_of(pgdata), |_| {});
    let outcome = util::run_stage(&document, args);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert_eq!(outcome.json["basebackup"]["source"], "initdb");
    outcome.json["basebackup"]["template"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The port of each PGDATA a test prepared.
static PORTS: std::sync::Mutex<BTreeMap<PathBuf, u16>> = std::sync::Mutex::new(BTreeMap::new());

/// A port for the PGDATA at `path`, the same on every call (so `describe` can start what
/// `prepare` configured).
fn port_of(path: &Path) -> u16 {
    *PORTS
        .lock()
        .unwrap()
        .entry(path.to_path_buf())
        .or_insert_with(free_tcp_port)
}

/// The one template slot in `cache`, and that nothing else (a build, a discarded one) is left.
fn only_slot(cache: &Path) -> PathBuf {
    let names: Vec<PathBuf> = fs::read_dir(cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let slot = names[0].clone();
    let name = slot.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("initdb-"), "{name}");
    slot
}

/// Every file below `root` (relative path → contents); directories as `None`.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                pending.push(path);
                found.insert(relative, None);
            } else {
                found.insert(relative, Some(fs::read(&path).unwrap()));
            }
        }
    }
    found
}

/// Roles and cluster-wide settings of a started PGDATA.
fn describe(pgdata: &Path) -> Vec<String> {
    let document = util::document(pgdata, port_of(pgdata), |_| {});
    let postgres = util::RunningPostgres::start(&document);
    let mut client = postgres.client();
    let mut facts = Vec::new();
    let roles = "SELECT rolname || ' ' || rolsuper FROM pg_roles ORDER BY 1";
    for row in client.query(roles, &[]).unwrap() {
        facts.push(row.get::<_, String>(0));
    }
    let settings = "SELECT datname || ' ' || pg_encoding_to_char(encoding) || ' ' || datcollate \
                    FROM pg_database ORDER BY 1";
    for row in client.query(settings, &[]).unwrap() {
        facts.push(row.get::<_, String>(0));
    }
    facts
}

#[test]
fn a_miss_builds_the_template_and_a_hit_copies_what_initdb_would_make() {
    let dir = TestDir::new("bbf-tpl-");
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let args = ["--template-cache-dir", cache_arg];
    let (first, second, plain) = (
        dir.path().join("first"),
        dir.path().join("copied"),
        dir.path().join("initdb"),
    );
    // The same port and path length for both compared PGDATAs (they run one after the
    // other; the socket directory is named in postgresql.conf).
    let port = port_of(&second);
    PORTS.lock().unwrap().insert(plain.clone(), port);
    assert_eq!(prepare(&first, &args), "miss");
    only_slot(&cache);
    assert_eq!(prepare(&second, &args), "hit");
    assert_eq!(prepare(&plain, &["--no-template-cache"]), "off");

    // Same files with the same contents, but for what every initdb makes new: pg_control
    // and the first WAL segment (system identifier, times), the statistics file (times).
    // postgresql.conf names the socket directory, PGDATA itself: compare it without that.
    let (copied, mut made) = (tree(&second), tree(&plain));
    let conf = made
        .get_mut(Path::new("postgresql.conf"))
        .unwrap()
        .as_mut()
        .unwrap();
    let text = String::from_utf8(conf.clone()).unwrap();
    let renamed = text.replace(plain.to_str().unwrap(), second.to_str().unwrap());
    *conf = renamed.into_bytes();
    assert_eq!(
        copied.keys().collect::<Vec<_>>(),
        made.keys().collect::<Vec<_>>()
    );
    let differing: Vec<_> = made
        .iter()
        .filter(|(path, contents)| copied.get(*path) != Some(*contents))
        .map(|(path, contents)| {
            let size = |c: &Option<Vec<u8>>| c.as_ref().map(Vec::len);
            assert_eq!(size(contents), size(&copied[path]), "{}", path.display());
            path.to_string_lossy().into_owned()
        })
        .collect();
    for path in &differing {
        assert!(
            path == "global/pg_control"
                || path == "pg_stat/pgstat.stat"
                || path == "pg_wal/000000010000000000000001",
            "{differing:?}"
        );
    }
    assert_eq!(tree(&first).len(), tree(&second).len());

    let facts = describe(&second);
    assert!(
        facts.contains(&format!("{} true", util::ADMIN)),
        "{facts:?}"
    );
    assert!(
        facts.contains(&"postgres UTF8 C.UTF-8".to_string()),
        "{facts:?}"
    );
    assert_eq!(facts, describe(&plain));
}

/// A named way to damage a template slot.
type Damage = (&'static str, fn(&Path));

#[test]
fn a_damaged_or_stale_template_is_rebuilt_never_used() {
    let dir = TestDir::new("bbf-tpl-");
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let args = ["--template-cache-dir", cache_arg];
    let pgdata = dir.path().join("pgdata");
    assert_eq!(prepare(&pgdata, &args), "miss");
    let slot = only_slot(&cache);

    // Each damage makes the next start rebuild (a miss), and the result starts.
    let damages: [Damage; 4] = [
        ("marker missing", |slot| {
            fs::remove_file(slot.join("complete")).unwrap()
        }),
        ("version mismatch", |slot| {
            fs::write(slot.join("version"), "an older postgres\n").unwrap()
        }),
        ("a file removed", |slot| {
            fs::remove_file(slot.join("data/global/pg_filenode.map")).unwrap()
        }),
        ("a file cut short", |slot| {
            fs::write(slot.join("data/PG_VERSION"), "").unwrap()
        }),
    ];
    for (what, damage) in damages {
        damage(&slot);
        assert_eq!(prepare(&pgdata, &args), "miss", "{what}");
        assert_eq!(only_slot(&cache), slot, "{what}");
        assert_eq!(prepare(&pgdata, &args), "hit", "{what}");
    }
    assert!(pgdata.join("global/pg_filenode.map").exists());
    assert!(describe(&pgdata).contains(&format!("{} true", util::ADMIN)));
}

#[test]
fn concurrent_starts_share_one_cache_directory() {
    let dir = TestDir::new("bbf-tpl-");
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap().to_string();
    let outcomes: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|n| {
                let pgdata = dir.path().join(format!("pgdata{n}"));
                let cache_arg = cache_arg.clone();
                scope.spawn(move || prepare(&pgdata, &["--template-cache-dir", &cache_arg]))
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    // All started from the cache (none fell back), and one template is left, no build.
    for outcome in &outcomes {
        assert!(outcome == "miss" || outcome == "hit", "{outcomes:?}");
    }
    only_slot(&cache);
    for n in 0..3 {
        assert!(dir.path().join(format!("pgdata{n}/PG_VERSION")).exists());
    }
}

#[test]
fn no_template_cache_runs_initdb_and_touches_no_cache() {
    let dir = TestDir::new("bbf-tpl-");
    let cache = dir.path().join("cache");
    let pgdata = dir.path().join("pgdata");
    let cache_arg = cache.to_str().unwrap();
    let args = ["--no-template-cache", "--template-cache-dir", cache_arg];
    assert_eq!(prepare(&pgdata, &args), "off");
    assert!(!cache.exists());
    assert!(pgdata.join("global/pg_control").exists());
}

#[test]
fn an_unusable_cache_directory_falls_back_to_initdb() {
    let dir = TestDir::new("bbf-tpl-");
    let blocker = dir.path().join("a-file");
    fs::write(&blocker, "not a directory").unwrap();
    let pgdata = dir.path().join("pgdata");
    let cache_arg = blocker.join("cache");
    let outcome = prepare(
        &pgdata,
        &["--template-cache-dir", cache_arg.to_str().unwrap()],
    );
    assert_eq!(outcome, "fallback");
    assert!(describe(&pgdata).contains(&format!("{} true", util::ADMIN)));
}

/// Sets the modification time of `path` (a file or a directory) to `age` ago.
fn age_by(path: &Path, age: std::time::Duration) {
    let when = std::time::SystemTime::now() - age;
    fs::File::open(path).unwrap().set_modified(when).unwrap();
}

#[test]
fn a_start_prunes_crashed_builds_and_unused_templates_and_nothing_else() {
    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
    let dir = TestDir::new("bbf-tpl-");
    let cache = dir.path().join("cache");
    fs::create_dir(&cache).unwrap();
    let make = |name: &str, age: std::time::Duration| {
        let path = cache.join(name);
        fs::create_dir(&path).unwrap();
        fs::write(path.join("payload"), b"x").unwrap();
        age_by(&path, age);
        path
    };
    // A crashed build (two hours without a change) and one under way (a minute).
    make(".build-initdb-00000000000000aa-1-2", 2 * HOUR);
    make(".trash-initdb-00000000000000ab-1-2", 2 * HOUR);
    make(".build-initdb-00000000000000ac-1-2", HOUR / 60);
    // Templates: last used a month ago, last used an hour ago, never stamped but made a
    // month ago.
    let unused = make("initdb-00000000000000b0", HOUR);
    fs::write(unused.join("last-used"), b"").unwrap();
    age_by(&unused.join("last-used"), 30 * 24 * HOUR);
    let recent = make("initdb-00000000000000b1", 30 * 24 * HOUR);
    fs::write(recent.join("last-used"), b"").unwrap();
    age_by(&recent.join("last-used"), HOUR);
    let unstamped = make("initdb-00000000000000b2", HOUR);
    fs::write(unstamped.join("complete"), b"").unwrap();
    age_by(&unstamped.join("complete"), 30 * 24 * HOUR);
    // Not the cache's names, however old: left alone.
    make("mine", 300 * 24 * HOUR);
    make("initdb-NOT-A-HASH", 300 * 24 * HOUR);
    let file = cache.join("initdb-00000000000000b3");
    fs::write(&file, b"a file, not a template").unwrap();
    age_by(&file, 300 * 24 * HOUR);

    let cache_arg = cache.to_str().unwrap();
    let pgdata = dir.path().join("pgdata");
    assert_eq!(
        prepare(&pgdata, &["--template-cache-dir", cache_arg]),
        "miss"
    );
    // The template this start built is the one 16-digit slot that is not a planted one.
    let built_here = |name: &str| {
        name.starts_with("initdb-") && name.len() == 23 && !name.starts_with("initdb-00000000")
    };
    let mut left: Vec<String> = fs::read_dir(&cache)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !built_here(name))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".build-initdb-00000000000000ac-1-2",
            "initdb-00000000000000b1",
            "initdb-00000000000000b3",
            "initdb-NOT-A-HASH",
            "mine"
        ]
    );
    // Exactly one more template: the one this start built and stamped.
    let built: Vec<PathBuf> = fs::read_dir(&cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| built_here(&path.file_name().unwrap().to_string_lossy()))
        .collect();
    assert_eq!(built.len(), 1, "{built:?}");
    assert!(built[0].join("last-used").is_file());
    // The next start hits it (the stamp is not part of the checked tree).
    let again = dir.path().join("pgdata-2");
    assert_eq!(prepare(&again, &["--template-cache-dir", cache_arg]), "hit");
}
