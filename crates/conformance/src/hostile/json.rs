//! JSON at its edges (SPEC §2): values a codec can lose — integers beyond
//! 2^53 (`u64::MAX`, `i64::MIN`), floats at the ends of `f64`, `-0.0`,
//! NUL and other escapes in strings and keys, empty containers — read back
//! exactly in every JSON field; and the 1 MiB limit, measured on the
//! canonical serialisation ([`canonical_json`]: escapes count as the bytes
//! they take), accepts exactly 1 MiB and rejects one byte more.
//!
//! "Exactly" is `==` and the same serde_json text, so `-0.0` must not come
//! back as `0.0`, nor `1.0` as `1`.

use serde_json::{json, Map, Value};
use stowage_core::encoding::canonical_json;
use stowage_core::validate::{MAX_JSON_BYTES, MAX_PAGE};
use stowage_core::{ErrorKind, NewEvent, RunFilter, RunId, RunSummary, Stores};

use crate::harness::Harness;
use crate::reopen::reopened;
use crate::util::{assert_unchanged, expect_kind, meta, ok, open, snapshot, spec};

/// JSON values a storage codec can lose, each with a name.
fn edge_values() -> Vec<(&'static str, Value)> {
    let mut keys = Map::new();
    for (i, key) in [
        "",
        "\u{0}",
        "a",
        "a\u{0}",
        "a\u{0}b",
        "\"",
        "\\",
        "\n",
        "\u{1f}",
        "\u{7f}",
        "🚀",
        "\u{2028}",
        "{",
        "}",
        ":",
        ".",
        "$where",
        "__proto__",
    ]
    .iter()
    .enumerate()
    {
        keys.insert((*key).to_owned(), json!(i));
    }
    let mut deep = json!([u64::MAX, i64::MIN, -0.0, "\u{0}"]);
    for i in 0..62 {
        deep = if i % 2 == 0 {
            json!({ "\u{0}": deep })
        } else {
            json!([deep])
        };
    }
    vec![
        ("u64::MAX", json!(u64::MAX)),
        ("i64::MIN", json!(i64::MIN)),
        ("i64::MAX", json!(i64::MAX)),
        ("2^53 + 1", json!(9_007_199_254_740_993_u64)),
        ("-(2^53 + 1)", json!(-9_007_199_254_740_993_i64)),
        ("1e308", json!(1e308)),
        ("-1e308", json!(-1e308)),
        ("f64::MAX", json!(f64::MAX)),
        ("f64::MIN_POSITIVE", json!(f64::MIN_POSITIVE)),
        ("the smallest subnormal 5e-324", json!(5e-324)),
        ("-0.0", json!(-0.0)),
        ("0.0", json!(0.0)),
        ("0.1", json!(0.1)),
        ("0.1 + 0.2", json!(0.1 + 0.2)),
        ("1.0, a float", json!(1.0)),
        ("a NUL string", json!("\u{0}")),
        (
            "control characters",
            json!("\u{0}a\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f}\u{7f}\u{80}\u{85}\u{9f}"),
        ),
        ("quotes and slashes", json!("\"\\/'`\\u0000")),
        (
            "unicode",
            json!("\u{2028}\u{2029}\u{feff}\u{fffd}\u{ffff}\u{10ffff}🚀 שלום \u{202e}é"),
        ),
        ("the empty string", json!("")),
        ("an empty object", json!({})),
        ("an empty array", json!([])),
        (
            "nested empties",
            json!([[], {}, [[]], {"": {}}, [{}], {"a": []}]),
        ),
        ("null and booleans", json!([null, true, false])),
        ("keys needing escapes", Value::Object(keys)),
        ("edge numbers 63 levels deep", deep),
        (
            "a mix",
            json!({"n": [u64::MAX, i64::MIN, -0.0, 1e308, 0.1, 1.0], "s": "\u{0}", "": {}}),
        ),
    ]
}

/// Fails unless `got` is `want` exactly: equal, and serialised alike (so a
/// `-0.0` read back as `0.0`, or `1.0` as `1`, fails).
#[track_caller]
fn assert_same(got: &Value, want: &Value, what: &str) {
    let (g, w) = (got.to_string(), want.to_string());
    assert!(
        got == want && g == w,
        "{what} must read back exactly (SPEC §2):\nwrote {}\nread  {}",
        crate::util::short_debug(&w),
        crate::util::short_debug(&g)
    );
}

/// One edge value's run (tags, event payload, summary output) and session.
struct Placed {
    name: &'static str,
    value: Value,
    run: RunId,
    session: String,
}

/// Every JSON field reads back exactly for values a codec can lose (integers beyond 2^53, floats at the ends of `f64`, `-0.0`, NUL and other escapes in strings and keys, empty containers, edge numbers 63 levels deep) — event payloads (as appended, from `read_events`, and on an idempotent retry with the same value, which must match the stored one), run tags and summary outputs (`get_run`, `list_runs`), session data (create, save, `load_session`, `list_sessions`) — and every run's chain verifies; on durable backends all of it again after a reopen.
pub async fn json_edge_values_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let mut placed = Vec::new();
    for (i, (name, value)) in edge_values().into_iter().enumerate() {
        let mut m = meta("json");
        m.tags = json!({ "v": value.clone() });
        let run = ok(
            s.runs.create_run(spec(i as u64), m).await,
            &format!("create_run with tags holding {name}"),
        );
        let new = NewEvent::new("edge", value.clone()).with_idempotency_key("k");
        let e = ok(
            s.runs.append_event(run, new).await,
            &format!("append_event with a payload of {name}"),
        );
        assert_same(
            &e.payload,
            &value,
            &format!("the appended payload of {name}"),
        );
        let mut summary = RunSummary::new("edge");
        summary.output = value.clone();
        let done = ok(
            s.runs.complete_run(run, summary).await,
            &format!("complete_run with an output of {name}"),
        );
        let output = done.summary.map(|x| x.output).unwrap_or_default();
        assert_same(&output, &value, &format!("the returned output of {name}"));
        let session = format!("s{i:02}");
        let created = ok(
            s.sessions.create_session(&session, value.clone()).await,
            &format!("create_session with data of {name}"),
        );
        assert_same(
            &created.data,
            &value,
            &format!("created session data of {name}"),
        );
        placed.push(Placed {
            name,
            value,
            run,
            session,
        });
    }
    // Save each session's data into the next one's, so a save replaces
    // one edge value with another.
    let n = placed.len();
    for i in 0..n {
        let (id, value, name) = {
            let next = &placed[(i + 1) % n];
            (placed[i].session.clone(), next.value.clone(), next.name)
        };
        let saved = ok(
            s.sessions.save_session(&id, value.clone(), Some(1)).await,
            &format!("save_session with data of {name}"),
        );
        assert_same(
            &saved.data,
            &value,
            &format!("saved session data of {name}"),
        );
    }
    read_back(&s, &placed, "").await;
    let check = "hostile::json_edge_values_round_trip (its reopen part)";
    if let Some(s) = reopened(h, s, check).await {
        read_back(&s, &placed, " after reopen").await;
    }
}

/// Reads every placed value back through every read call.
async fn read_back(s: &Stores, placed: &[Placed], when: &str) {
    let runs = ok(
        s.runs.list_runs(&RunFilter::all(), None, MAX_PAGE).await,
        "list_runs",
    );
    let sessions = ok(
        s.sessions.list_sessions(None, MAX_PAGE).await,
        "list_sessions",
    );
    let n = placed.len();
    for (i, p) in placed.iter().enumerate() {
        let name = p.name;
        let events = ok(s.runs.read_events(p.run, None, 10).await, "read_events");
        let [e] = &events[..] else {
            panic!(
                "run of {name}: expected 1 event{when}, read {}",
                events.len()
            );
        };
        assert_same(
            &e.payload,
            &p.value,
            &format!("the event payload of {name}{when}"),
        );
        let retry = NewEvent::new("edge", p.value.clone()).with_idempotency_key("k");
        let again = ok(
            s.runs.append_event(p.run, retry).await,
            &format!(
                "retrying the append of {name}{when} (same key, same payload: the original \
                 comes back, also after the run completed)"
            ),
        );
        assert_eq!(
            &again, e,
            "a retry of {name}{when} returns the stored event"
        );
        ok(
            s.runs.verify_run(p.run).await,
            &format!("verify_run of {name}{when}"),
        );

        let run = ok(s.runs.get_run(p.run).await, "get_run");
        let tags = json!({ "v": p.value.clone() });
        assert_same(
            &run.metadata.tags,
            &tags,
            &format!("run tags holding {name}{when}"),
        );
        let output = run.summary.as_ref().map(|x| x.output.clone());
        assert_same(
            &output.unwrap_or_default(),
            &p.value,
            &format!("the summary output of {name}{when}"),
        );
        let Some(listed) = runs.iter().find(|r| r.id == p.run) else {
            panic!("list_runs{when} lost the run of {name}");
        };
        assert_eq!(
            listed, &run,
            "list_runs{when} returns the run of {name} exactly"
        );

        let next = &placed[(i + 1) % n];
        let loaded = ok(s.sessions.load_session(&p.session).await, "load_session");
        let Some(loaded) = loaded else {
            panic!("session of {name}{when} is gone");
        };
        let what = format!("session data of {}{when}", next.name);
        assert_same(&loaded.data, &next.value, &what);
        let Some(listed) = sessions.iter().find(|x| x.id == p.session) else {
            panic!("list_sessions{when} lost the session of {name}");
        };
        assert_eq!(listed, &loaded, "list_sessions{when}: {what}");
    }
}

/// A value whose canonical serialisation is exactly `target` bytes once
/// `wrap`ped: a string of NULs (6 bytes each), emoji (4), quotes (2) and
/// plain letters, so the escaped length, not the character count, is what
/// hits the limit.
fn sized(target: usize, wrap: impl Fn(String) -> Value) -> Value {
    let overhead = canonical_json(&wrap(String::new())).len();
    let mut body = "\u{0}".repeat(1000);
    body.push_str(&"🚀".repeat(1000));
    body.push_str(&"\"".repeat(1000));
    let used = canonical_json(&Value::String(body.clone())).len() - 2;
    body.push_str(&"x".repeat(target - overhead - used));
    let value = wrap(body);
    assert_eq!(
        canonical_json(&value).len(),
        target,
        "test data: the value must serialise to {target} bytes"
    );
    value
}

/// A JSON value of exactly 1 MiB once serialised canonically (escapes counted as written) is accepted in every JSON field — event payload, run tags, summary output, session data on create and save — and reads back exactly; one byte more is `InvalidInput` in each and changes nothing.
pub async fn json_size_limit_exact(h: &dyn Harness) {
    let max = MAX_JSON_BYTES;
    let tagged = |s: String| json!({ "t": s });
    let s = open(h).await;
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    ok(
        s.sessions.create_session("s", json!({})).await,
        "create_session",
    );

    let over = sized(max + 1, Value::String);
    let mut m = meta("b");
    m.tags = sized(max + 1, tagged);
    let before = snapshot(&s, &[], &[]).await;
    let what = "JSON one byte over 1 MiB once serialised";
    let invalid = ErrorKind::InvalidInput;
    expect_kind(
        s.runs
            .append_event(run, NewEvent::new("k", over.clone()))
            .await,
        invalid,
        &format!("append_event with a payload of {what}"),
    );
    expect_kind(
        s.runs.create_run(spec(2), m).await,
        invalid,
        &format!("create_run with tags of {what}"),
    );
    let mut summary = RunSummary::new("done");
    summary.output = over.clone();
    expect_kind(
        s.runs.complete_run(run, summary).await,
        invalid,
        &format!("complete_run with an output of {what}"),
    );
    expect_kind(
        s.sessions.create_session("big", over.clone()).await,
        invalid,
        &format!("create_session with data of {what}"),
    );
    expect_kind(
        s.sessions.save_session("s", over, None).await,
        invalid,
        &format!("save_session with data of {what}"),
    );
    assert_unchanged(&before, &snapshot(&s, &[], &[]).await, what);

    let what = "JSON of exactly 1 MiB once serialised";
    let full = sized(max, Value::String);
    let e = ok(
        s.runs
            .append_event(run, NewEvent::new("k", full.clone()))
            .await,
        &format!("append_event with a payload of {what}"),
    );
    assert_same(
        &e.payload,
        &full,
        &format!("the appended payload of {what}"),
    );
    let events = ok(s.runs.read_events(run, None, 10).await, "read_events");
    let [read] = &events[..] else {
        panic!("expected 1 event, read {}", events.len());
    };
    assert_same(&read.payload, &full, &format!("a payload of {what}"));
    ok(s.runs.verify_run(run).await, "verify_run");

    let mut m = meta("b");
    let full_tags = sized(max, tagged);
    m.tags = full_tags.clone();
    let big = ok(
        s.runs.create_run(spec(2), m).await,
        &format!("create_run with tags of {what}"),
    );
    let mut summary = RunSummary::new("done");
    summary.output = full.clone();
    ok(
        s.runs.complete_run(big, summary).await,
        &format!("complete_run with an output of {what}"),
    );
    let got = ok(s.runs.get_run(big).await, "get_run");
    assert_same(
        &got.metadata.tags,
        &full_tags,
        &format!("run tags of {what}"),
    );
    let output = got.summary.map(|x| x.output).unwrap_or_default();
    assert_same(&output, &full, &format!("a summary output of {what}"));

    let created = ok(
        s.sessions.create_session("big", full.clone()).await,
        &format!("create_session with data of {what}"),
    );
    assert_same(
        &created.data,
        &full,
        &format!("created session data of {what}"),
    );
    let loaded = ok(s.sessions.load_session("big").await, "load_session");
    assert_same(
        &loaded.map(|x| x.data).unwrap_or_default(),
        &full,
        &format!("loaded session data of {what}"),
    );
    ok(
        s.sessions.save_session("s", full.clone(), Some(1)).await,
        &format!("save_session with data of {what}"),
    );
    let loaded = ok(s.sessions.load_session("s").await, "load_session");
    assert_same(
        &loaded.map(|x| x.data).unwrap_or_default(),
        &full,
        &format!("saved session data of {what}"),
    );
}
