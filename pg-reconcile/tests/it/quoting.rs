//! Quoting round trips through a real Postgres: any string (no NUL) comes back unchanged as
//! an identifier, a literal, and a dollar-quoted text inside a `DO` block.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use compute_spec::quote::{do_block_tag, DollarQuoted, Ident, Literal};
use pg_test_support::TestPostgres;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn round_trip(client: &mut postgres::Client, text: &str) {
    // Literal.
    let sql = format!("SELECT {}::text", Literal(text));
    let row = client.query_one(sql.as_str(), &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), text, "literal via {sql}");
    // Identifier (Postgres truncates names to 63 bytes).
    if text.len() <= 63 && !text.is_empty() {
        let sql = format!("SELECT 1 AS {}", Ident(text));
        let statement = client.prepare(sql.as_str()).unwrap();
        assert_eq!(statement.columns()[0].name(), text, "identifier via {sql}");
    }
    // Dollar-quoted inside a DO block, as the block's own tag must not end it early.
    let tag = do_block_tag([text]);
    let sql = format!(
        "DO ${tag}$ BEGIN PERFORM pg_catalog.set_config('test.value', {}, false); END ${tag}$",
        DollarQuoted(text)
    );
    client.batch_execute(&sql).unwrap();
    let row = client
        .query_one("SELECT pg_catalog.current_setting('test.value')", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), text, "dollar-quoted via {sql}");
}

#[test]
fn upstream_cases_round_trip() {
    let pg = TestPostgres::start();
    let mut client = pg.client();
    for text in [
        "name",
        "\"name\";\\n select 1;",
        "test\\'",
        "x",
        "xx",
        "$x",
        "x$",
        "$x$",
        "xx$",
        "$xx",
        "$xx$",
        "role$",
        "role$$",
        "role$x$",
        "name$x$",
        "'; SELECT pg_sleep(1000);",
        "\";with ';injections $$ $x$ $ %I !/\\&#@",
        " lead",
        "trail\t",
        "🐘",
        "\\",
        "",
    ] {
        round_trip(&mut client, text);
    }
}

#[test]
fn arbitrary_strings_round_trip() {
    let pg = TestPostgres::start();
    let client = std::cell::RefCell::new(pg.client());
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop_oneof!["[^\u{0}]{0,40}", "[$x'\"\\\\ \t;%]{0,20}",];
    runner
        .run(&strategy, |text| {
            round_trip(&mut client.borrow_mut(), &text);
            Ok(())
        })
        .unwrap();
}
