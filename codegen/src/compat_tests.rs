//! Unit tests of the AsyncAPI breaking-change check: one per kind of break, plus what is not a break.

use crate::compat::{Report, check_asyncapi};
use crate::tests::ASYNCAPI;

/// Compares the fixture with a copy where `replace` became `with` (each must occur in the fixture).
fn compare(edits: &[(&str, &str)]) -> Report {
    let mut new = ASYNCAPI.to_owned();
    for (replace, with) in edits {
        assert!(new.contains(replace), "fixture lacks {replace}");
        new = new.replacen(replace, with, 1);
    }
    check_asyncapi(ASYNCAPI, "old.yaml", &new, "new.yaml").unwrap()
}

fn breaks(report: &Report) -> Vec<String> {
    report
        .breaks
        .iter()
        .map(|b| format!("{}: {}", b.at, b.what))
        .collect()
}

#[test]
fn an_unchanged_document_has_no_break() {
    let report = compare(&[]);
    assert!(report.breaks.is_empty(), "{:?}", breaks(&report));
    assert!(report.passes());
}

#[test]
fn a_removed_message_is_a_break() {
    let report = compare(&[(
        "      - $ref: '#/channels/chat/messages/ErrorMessage'\n",
        "",
    )]);
    assert_eq!(breaks(&report), ["server message error: message removed"]);
    assert!(!report.passes());
}

#[test]
fn a_removed_field_is_a_break_also_in_a_shared_nested_schema() {
    let report = compare(&[(
        "        retry_after: {type: integer, description: Milliseconds.}\n",
        "",
    )]);
    assert_eq!(
        breaks(&report),
        ["server message error field error.retry_after: field removed"]
    );
}

#[test]
fn a_narrowed_type_or_limit_is_a_break() {
    let report = compare(&[
        (
            "count: {type: integer, format: int32, description: Count.}",
            "count: {type: string, description: Count.}",
        ),
        (
            "content: {type: string, maxLength: 10000, x-max-bytes: 10, description: Text.}",
            "content: {type: string, maxLength: 100, x-max-bytes: 10, description: Text.}",
        ),
        (
            "seq: {type: integer, format: int64, minimum: 1, description: Sequence.}",
            "seq: {type: integer, format: int32, minimum: 1, description: Sequence.}",
        ),
    ]);
    let found = breaks(&report);
    for expected in [
        "type changed from \"integer\" to \"string\"",
        "format changed from \"int32\" to none",
        "maxLength narrowed from 10000 to 100",
        "format changed from \"int64\" to \"int32\"",
    ] {
        assert!(
            found.iter().any(|b| b.ends_with(expected)),
            "{expected} not in {found:?}"
        );
    }
    // Each direction of `user_message` (client and echo) is reported.
    assert!(
        found
            .iter()
            .any(|b| b.starts_with("client message user_message field count:"))
    );
    assert!(
        found
            .iter()
            .any(|b| b.starts_with("server message user_message field count:"))
    );
}

#[test]
fn a_new_required_field_is_a_break() {
    let report = compare(&[(
        "required: [type, session_id, content]",
        "required: [type, session_id, content, seq]",
    )]);
    assert_eq!(
        breaks(&report),
        [
            "server message user_message field seq: field newly required (or new required field)",
            "client message user_message field seq: field newly required (or new required field)",
        ]
    );
}

#[test]
fn a_removed_or_changed_enum_value_is_a_break() {
    let report = compare(&[("enum: [user, ai, in-progress]", "enum: [user, bot]")]);
    let found = breaks(&report);
    assert!(
        found.contains(
            &"client message user_message field sender: enum value \"ai\" removed or changed"
                .to_owned()
        )
    );
    assert!(found.contains(
        &"client message user_message field sender: enum value \"in-progress\" removed or changed"
            .to_owned()
    ));
}

#[test]
fn additions_are_not_breaks() {
    let report = compare(&[
        (
            "enum: [user, ai, in-progress]",
            "enum: [user, ai, in-progress, system]",
        ),
        (
            "        done: {type: boolean, description: Done.}\n",
            "        done: {type: boolean, description: Done.}\n        extra: {type: string, description: New.}\n",
        ),
        (
            "content: {type: string, maxLength: 10000, x-max-bytes: 10, description: Text.}",
            "content: {type: string, maxLength: 20000, x-max-bytes: 10, description: Text.}",
        ),
    ]);
    assert!(report.breaks.is_empty(), "{:?}", breaks(&report));
}

#[test]
fn a_described_reference_is_followed_like_a_bare_one() {
    let report = compare(&[(
        "error: {$ref: '#/components/schemas/ErrorBody'}",
        "error: {description: Why., allOf: [{$ref: '#/components/schemas/ErrorBody'}]}",
    )]);
    assert!(report.breaks.is_empty(), "{:?}", breaks(&report));
}

#[test]
fn a_break_passes_only_with_a_major_version_change() {
    let removal = (
        "        retry_after: {type: integer, description: Milliseconds.}\n",
        "",
    );
    let minor = compare(&[removal, ("version: 1.0.0", "version: 1.1.0")]);
    assert!(!minor.major_changed());
    assert!(!minor.passes());
    let major = compare(&[removal, ("version: 1.0.0", "version: 2.0.0")]);
    assert!(major.major_changed());
    assert_eq!(major.breaks.len(), 1);
    assert!(major.passes());
}
