//! The vanilla cache state (beyond upstream): the block list of shared buffers, read from
//! `pg_buffercache` for an offload ([`VanillaState`], JSON) and loaded with `pg_prewarm` by a
//! prewarm — streamed: the JSON is read one range at a time, never held as a
//! [`VanillaState`], and loaded in batches of at most [`BATCH`] ranges (one statement each,
//! on one session per database), so memory stays at the decompressed state plus one batch
//! whatever the state holds.
//!
//! The state's fields come in the order an offload writes them: `format` before
//! `relations`, and in each relation its `database`, `tablespace`, `filenode` and `fork`
//! before its `ranges`; a state in another order is refused as not a block list.

use std::fmt;
use std::sync::atomic::AtomicBool;

use compute_spec::ComputeDocument;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::cache::{
    cancellable, connect, ensure_extension, failed, failed_in, Loaded, PREWARM_LIMITS,
};
use crate::Error;

/// The vanilla state's `format`.
pub const VANILLA_FORMAT: &str = "compute-tools/pg_buffercache/1";

/// Ranges loaded per statement: bounds the arrays built here and sent to Postgres.
pub const BATCH: usize = 65_536;

/// The vanilla state: the buffer cache's blocks, per relation file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VanillaState {
    /// [`VANILLA_FORMAT`].
    pub format: String,
    /// Relation forks with cached blocks.
    pub relations: Vec<CachedFork>,
}

/// The cached blocks of one relation fork.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFork {
    /// The database's name.
    pub database: String,
    /// `pg_buffercache.reltablespace`.
    pub tablespace: u32,
    /// `pg_buffercache.relfilenode`.
    pub filenode: u32,
    /// 0 main, 1 fsm, 2 vm, 3 init.
    pub fork: i32,
    /// Inclusive block ranges, ascending.
    pub ranges: Vec<(i64, i64)>,
}

impl VanillaState {
    /// The number of blocks.
    pub fn blocks(&self) -> i64 {
        self.relations
            .iter()
            .flat_map(|fork| &fork.ranges)
            .map(|(first, last)| last - first + 1)
            .sum()
    }
}

/// The buffer cache's block list, through `pg_buffercache`.
pub(crate) fn read_vanilla(client: &mut postgres::Client) -> Result<VanillaState, Error> {
    let schema = ensure_extension(client, "pg_buffercache")?;
    let sql = format!(
        "SELECT d.datname::text, b.reltablespace, b.relfilenode, b.relforknumber::int4, \
                b.relblocknumber::int8 \
         FROM {schema}.pg_buffercache b JOIN pg_catalog.pg_database d ON d.oid = b.reldatabase \
         WHERE b.relfilenode IS NOT NULL AND d.datallowconn \
         ORDER BY 1, 2, 3, 4, 5"
    );
    let rows = client
        .query(&sql, &[])
        .map_err(|error| failed("reading pg_buffercache", &error))?;
    let mut state = VanillaState {
        format: VANILLA_FORMAT.to_string(),
        relations: Vec::new(),
    };
    for row in rows {
        let (database, tablespace, filenode, fork, block): (String, u32, u32, i32, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let same = state.relations.last_mut().filter(|last| {
            last.database == database
                && last.tablespace == tablespace
                && last.filenode == filenode
                && last.fork == fork
        });
        match same {
            Some(last) => match last.ranges.last_mut() {
                Some(range) if range.1 + 1 == block => range.1 = block,
                _ => last.ranges.push((block, block)),
            },
            None => state.relations.push(CachedFork {
                database,
                tablespace,
                filenode,
                fork,
                ranges: vec![(block, block)],
            }),
        }
    }
    Ok(state)
}

/// Loads a database's ranges with `pg_prewarm` (in `schema`), clamped to the relations'
/// sizes; the blocks loaded.
fn prewarm_sql(schema: &str) -> String {
    format!(
        "WITH wanted AS ( \
             SELECT pg_catalog.pg_filenode_relation(w.ts, w.fn) AS rel, w.fork, w.first, w.last \
             FROM unnest($1::oid[], $2::oid[], $3::text[], $4::int8[], $5::int8[]) \
                  AS w(ts, fn, fork, first, last)), \
         sized AS ( \
             SELECT rel, fork, first, last, \
                    pg_catalog.pg_relation_size(rel, fork) \
                        / pg_catalog.current_setting('block_size')::int8 AS blocks \
             FROM wanted WHERE rel IS NOT NULL) \
         SELECT coalesce(sum({schema}.pg_prewarm(rel, 'buffer', fork, first, \
                                                 least(last, blocks - 1))), 0)::int8 \
         FROM sized WHERE first < blocks"
    )
}

/// The arrays of [`prewarm_sql`]'s parameters: one entry per block range.
#[derive(Default)]
struct Columns {
    tablespaces: Vec<u32>,
    filenodes: Vec<u32>,
    forks: Vec<&'static str>,
    firsts: Vec<i64>,
    lasts: Vec<i64>,
}

fn fork_name(fork: i32) -> Option<&'static str> {
    match fork {
        0 => Some("main"),
        1 => Some("fsm"),
        2 => Some("vm"),
        3 => Some("init"),
        _ => None,
    }
}

/// Loads a vanilla state (its JSON, decompressed) into the compute's shared buffers; `Ok(None)`
/// when `cancel` tripped.
pub(crate) fn load(
    document: &ComputeDocument,
    json: &[u8],
    cancel: &AtomicBool,
) -> Result<Option<Loaded>, Error> {
    let mut loader = Loader {
        document,
        cancel,
        open: None,
        session: None,
        batch: Columns::default(),
        total: 0,
        prewarmed: 0,
        stop: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let parsed = StateSeed(&mut loader)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match (parsed, loader.stop.take()) {
        (_, Some(Stop::Failed(error))) => return Err(error),
        (_, Some(Stop::Cancelled)) => return Ok(None),
        (Err(error), None) => {
            return Err(Error::BadState {
                file: None,
                message: format!("the stored state is not a pg_buffercache block list: {error}"),
            })
        }
        (Ok(()), None) => {}
    }
    match loader.flush() {
        Ok(()) => {}
        Err(()) => match loader.stop.take() {
            Some(Stop::Failed(error)) => return Err(error),
            _ => return Ok(None),
        },
    }
    let clamp = |value: i64| i32::try_from(value).unwrap_or(i32::MAX);
    Ok(Some(Loaded {
        total: clamp(loader.total),
        prewarmed: clamp(loader.prewarmed),
        skipped: clamp(loader.total.saturating_sub(loader.prewarmed)),
    }))
}

/// Why loading stopped before the end of the state.
enum Stop {
    Failed(Error),
    Cancelled,
}

/// A database's session and its statement; `client` is None for a database that is gone
/// (its blocks are skipped).
struct Session {
    database: String,
    client: Option<(stage_kit::local::Session, String)>,
}

/// The load under way: the ranges seen so far, the batch being filled, the session.
struct Loader<'a> {
    document: &'a ComputeDocument,
    cancel: &'a AtomicBool,
    /// The databases that exist and allow connections (listed at the first relation).
    open: Option<Vec<String>>,
    session: Option<Session>,
    batch: Columns,
    total: i64,
    prewarmed: i64,
    /// Set when a method returns `Err(())`: why.
    stop: Option<Stop>,
}

impl Loader<'_> {
    fn fail(&mut self, error: Error) -> Result<(), ()> {
        self.stop = Some(Stop::Failed(error));
        Err(())
    }

    /// The next relation's ranges are for `database`: the batch of another is loaded first.
    fn database(&mut self, database: &str) -> Result<(), ()> {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.database == database)
        {
            return Ok(());
        }
        self.flush()?;
        self.session = None;
        if self.open.is_none() {
            let listed = connect(self.document, None, PREWARM_LIMITS).and_then(|mut admin| {
                admin
                    .query(
                        "SELECT datname::text FROM pg_catalog.pg_database WHERE datallowconn",
                        &[],
                    )
                    .map_err(|error| failed_in(&admin, "listing the databases", &error))
            });
            match listed {
                Ok(rows) => self.open = Some(rows.iter().map(|row| row.get(0)).collect()),
                Err(error) => return self.fail(error),
            }
        }
        let exists = self
            .open
            .as_ref()
            .is_some_and(|open| open.iter().any(|name| name == database));
        let client = if exists {
            let session =
                connect(self.document, Some(database), PREWARM_LIMITS).and_then(|mut client| {
                    let sql = prewarm_sql(&ensure_extension(&mut client, "pg_prewarm")?);
                    Ok((client, sql))
                });
            match session {
                Ok(session) => Some(session),
                Err(error) => return self.fail(error),
            }
        } else {
            tracing::info!(
                database,
                "prewarm: the database is gone; its blocks are skipped"
            );
            None
        };
        self.session = Some(Session {
            database: database.to_string(),
            client,
        });
        Ok(())
    }

    /// One range of the current relation (`fork` None: a fork number this tool does not
    /// know, counted but not loaded).
    fn range(&mut self, fork: &Fork, first: i64, last: i64) -> Result<(), ()> {
        if first < 0 || last < first {
            return self.fail(Error::BadState {
                file: None,
                message: format!(
                    "the stored state holds the range {first}..{last}, not a block range"
                ),
            });
        }
        self.total = self.total.saturating_add(last - first + 1);
        let loads = self.session.as_ref().is_some_and(|s| s.client.is_some());
        let Some(name) = fork_name(fork.fork).filter(|_| loads) else {
            return Ok(());
        };
        self.batch.tablespaces.push(fork.tablespace);
        self.batch.filenodes.push(fork.filenode);
        self.batch.forks.push(name);
        self.batch.firsts.push(first);
        self.batch.lasts.push(last);
        if self.batch.firsts.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Loads the batch into the current database.
    fn flush(&mut self) -> Result<(), ()> {
        if self.batch.firsts.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let Some(Session {
            database,
            client: Some((client, sql)),
        }) = self.session.as_mut()
        else {
            return Ok(());
        };
        let loaded = cancellable(client, self.cancel, |client| {
            client
                .query_one(
                    sql.as_str(),
                    &[
                        &batch.tablespaces,
                        &batch.filenodes,
                        &batch.forks,
                        &batch.firsts,
                        &batch.lasts,
                    ],
                )
                .map(|row| row.get::<_, i64>(0))
        });
        match loaded {
            Ok(Some(loaded)) => {
                self.prewarmed = self.prewarmed.saturating_add(loaded);
                Ok(())
            }
            Ok(None) => {
                self.stop = Some(Stop::Cancelled);
                Err(())
            }
            Err(error) => {
                let what = format!("pg_prewarm in database {database}");
                let error = failed_in(client, what, &error);
                self.fail(error)
            }
        }
    }
}

/// A relation's identity, read before its ranges.
#[derive(Default)]
struct Fork {
    tablespace: u32,
    filenode: u32,
    fork: i32,
}

/// The loader stopped: the deserializer only needs to unwind (the loader knows why).
fn stopped<E: de::Error>() -> E {
    E::custom("loading stopped")
}

/// The whole state: `{"format": …, "relations": [...]}`.
struct StateSeed<'l, 'a>(&'l mut Loader<'a>);

impl<'de> DeserializeSeed<'de> for StateSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StateSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a block list {\"format\", \"relations\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut format, mut relations) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    let value: String = map.next_value()?;
                    if value != VANILLA_FORMAT {
                        let _ = self.0.fail(Error::BadState {
                            file: None,
                            message: format!(
                                "the stored state has format {value:?}, not {VANILLA_FORMAT:?} \
                                 (was it offloaded by a Neon compute?)"
                            ),
                        });
                        return Err(stopped());
                    }
                    format = true;
                }
                "relations" if !format => {
                    return Err(de::Error::custom("`relations` comes before `format`"))
                }
                "relations" => {
                    map.next_value_seed(Relations(&mut *self.0))?;
                    relations = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (format, relations) {
            (false, _) => Err(de::Error::missing_field("format")),
            (true, false) => Err(de::Error::missing_field("relations")),
            (true, true) => Ok(()),
        }
    }
}

/// `[relation, …]`.
struct Relations<'l, 'a>(&'l mut Loader<'a>);

impl<'de> DeserializeSeed<'de> for Relations<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Relations<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of relations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Relation(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// `{"database", "tablespace", "filenode", "fork", "ranges"}`, ranges last.
struct Relation<'l, 'a>(&'l mut Loader<'a>);

impl<'de> DeserializeSeed<'de> for Relation<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Relation<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a relation {\"database\", \"tablespace\", \"filenode\", \"fork\", \"ranges\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut fork = Fork::default();
        let mut seen = [false; 4];
        let mut ranges = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "database" => {
                    let database: String = map.next_value()?;
                    self.0
                        .database(&database)
                        .map_err(|()| stopped::<A::Error>())?;
                    seen[0] = true;
                }
                "tablespace" => (fork.tablespace, seen[1]) = (map.next_value()?, true),
                "filenode" => (fork.filenode, seen[2]) = (map.next_value()?, true),
                "fork" => (fork.fork, seen[3]) = (map.next_value()?, true),
                "ranges" if seen.contains(&false) => {
                    return Err(de::Error::custom(
                        "a relation's `ranges` come before its database, tablespace, \
                         filenode and fork",
                    ))
                }
                "ranges" => {
                    map.next_value_seed(Ranges(&mut *self.0, &fork))?;
                    ranges = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match ranges {
            true => Ok(()),
            false => Err(de::Error::missing_field("ranges")),
        }
    }
}

/// `[[first, last], …]` of one relation, each range handed to the loader as it is read.
struct Ranges<'l, 'a, 'f>(&'l mut Loader<'a>, &'f Fork);

impl<'de> DeserializeSeed<'de> for Ranges<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Ranges<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of block ranges [first, last]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some((first, last)) = seq.next_element::<(i64, i64)>()? {
            self.0
                .range(self.1, first, last)
                .map_err(|()| stopped::<A::Error>())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_counts_and_fork_names() {
        let state = VanillaState {
            format: VANILLA_FORMAT.to_string(),
            relations: vec![CachedFork {
                database: "postgres".into(),
                tablespace: 1663,
                filenode: 16384,
                fork: 0,
                ranges: vec![(0, 9), (20, 20)],
            }],
        };
        assert_eq!(state.blocks(), 11);
        assert_eq!(fork_name(2), Some("vm"));
        assert_eq!(fork_name(7), None);
    }
}
