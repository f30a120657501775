//! A large file parsed in pieces: its head (whatever comes before the first resource table)
//! and runs of `[KIND.NAME]` tables of about [`PIECE_BYTES`] each, parsed one at a time.
//!
//! `toml`'s parser lexes a whole document into vectors of tokens and events before it builds
//! the tables: for a file of 100,000 resources (11 MB) those vectors and the document were the
//! load's peak (about 150 MiB). A piece's vectors and tables are freed as soon as its resources
//! are read. The pieces are parsed on a second thread, at most two ahead of the one being read
//! ([`parse_each`]): parsing and reading cost about the same, and overlap.
//!
//! The pieces must give exactly what the whole file gives, spans included (every place in a
//! diagnostic is a byte offset into the file). So a file is cut only where that is sure
//! ([`cut`]): after its head, every header line is a plain `[KIND.NAME]` of a kind with rules,
//! each written once, and the head holds no resource kind. A piece's spans are moved by its
//! offset ([`shifted`]). A syntax error in a piece (a multi-line string with a line that looks
//! like a header, say) makes the loader start again with every file parsed whole
//! ([`super::Parsing::Whole`]), so that errors and their recovery are the whole file's.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use ferry_core::{Kind, RuleBook};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Node, ParseWhole};

/// Resource tables are gathered into pieces of at least this many bytes: small enough that a
/// piece's parser vectors cost little, large enough that the parser's fixed cost per call does
/// not show.
const PIECE_BYTES: usize = 64 * 1024;

/// Where a file is cut: its head, then its pieces of resource tables, in order and contiguous.
pub(super) struct Cut {
    pub(super) head: Range<usize>,
    pub(super) pieces: Vec<Range<usize>>,
}

/// Cuts a file's text for parsing in pieces, or `None` when it must be parsed whole: a header
/// after the head that is not a plain `[KIND.NAME]` of a kind with rules (a sub-table, an array
/// of tables, a quoted key, a block written after the resources), or a resource written twice
/// (which TOML reports as a duplicate key, with the whole file's recovery).
pub(super) fn cut(text: &str, rules: &RuleBook) -> Option<Cut> {
    cut_at(text, rules, PIECE_BYTES)
}

fn cut_at(text: &str, rules: &RuleBook, piece_bytes: usize) -> Option<Cut> {
    // Each resource header's line start, kind and name.
    let mut resource_headers: Vec<(usize, &str, &str)> = Vec::new();
    let bytes = text.as_bytes();
    // Header lines are found from their `[`, fewer than the lines: the search skips from one
    // to the next, and a `[` is at a line's start when only spaces or tabs come before it.
    let mut from = 0;
    while let Some(found) = text[from..].find('[') {
        let bracket = from + found;
        let start = bytes[..bracket]
            .iter()
            .rposition(|&byte| byte != b' ' && byte != b'\t')
            .map_or(0, |before| before + 1);
        if start > 0 && bytes[start - 1] != b'\n' {
            from = bracket + 1;
            continue;
        }
        let end = text[bracket..]
            .find('\n')
            .map_or(text.len(), |newline| bracket + newline + 1);
        from = end;
        match resource_header(&text[bracket..end], rules) {
            Some((kind, name)) => resource_headers.push((start, kind, name)),
            None if resource_headers.is_empty() => {}
            None => return None,
        }
    }
    // Sized once, after the search, rather than grown (and rehashed) header by header.
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(resource_headers.len());
    for &(_, kind, name) in &resource_headers {
        if !seen.insert((kind, name)) {
            return None;
        }
    }
    drop(seen);
    let Some(&(first, _, _)) = resource_headers.first() else {
        return Some(Cut {
            head: 0..text.len(),
            pieces: Vec::new(),
        });
    };
    let mut pieces = Vec::new();
    let mut piece_start = first;
    for &(header, _, _) in &resource_headers[1..] {
        if header - piece_start >= piece_bytes {
            pieces.push(piece_start..header);
            piece_start = header;
        }
    }
    pieces.push(piece_start..text.len());
    Some(Cut {
        head: 0..first,
        pieces,
    })
}

/// The kind and name of a plain `[KIND.NAME]` header line (bare keys, spaces or tabs around
/// them, an optional comment after it) of a kind with rules.
fn resource_header<'t>(line: &'t str, rules: &RuleBook) -> Option<(&'t str, &'t str)> {
    let inside = line.strip_prefix('[')?;
    if inside.starts_with('[') {
        return None;
    }
    let (inside, after) = inside.split_once(']')?;
    let after = after
        .trim_end_matches(['\n', '\r'])
        .trim_start_matches([' ', '\t']);
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let (kind, name) = inside.split_once('.')?;
    let (kind, name) = (
        kind.trim_matches([' ', '\t']),
        name.trim_matches([' ', '\t']),
    );
    let bare = |key: &str| {
        !key.is_empty()
            && key
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    };
    if !bare(kind) || !bare(name) {
        return None;
    }
    match kind.parse::<Kind>() {
        Ok(parsed) if rules.get(parsed).is_some() => Some((kind, name)),
        _ => None,
    }
}

/// Whether a parsed head holds a top-level key of a resource kind (`[vm]`, `vm.x = ...`): its
/// resources would then be defined across the head and the pieces, which only the whole file's
/// parse judges rightly.
pub(super) fn head_holds_resources(head: &DeTable<'_>, rules: &RuleBook) -> bool {
    head.keys().any(|key| {
        key.get_ref()
            .parse::<Kind>()
            .is_ok_and(|kind| rules.get(kind).is_some())
    })
}

/// A piece's top-level keys (kinds) and their tables, in the piece's order.
pub(super) type Tables<'t> = Vec<(Spanned<Cow<'t, str>>, Node<'t>)>;

/// Pieces parsed ahead of the one being read, at most: enough that the reading never waits
/// for the parser while it has work, few enough that the load's memory peak stays a piece's.
const PIECES_AHEAD: usize = 2;

/// Parses each piece of `text` and hands its document, spans moved to the whole file's, to
/// `read`, in order. With more than one piece the parsing runs on a second thread, a few pieces
/// ahead of `read`: it is about as costly as reading, and the two overlap. A piece with a
/// syntax error stops it there: the caller loads again with every file parsed whole.
pub(super) fn parse_each<'t>(
    text: &'t str,
    pieces: &[Range<usize>],
    mut read: impl FnMut(Tables<'t>),
) -> Result<(), ParseWhole> {
    if pieces.len() < 2 {
        for piece in pieces {
            read(parse_piece(text, piece.clone())?);
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(PIECES_AHEAD);
        scope.spawn(move || {
            for piece in pieces {
                let parsed = parse_piece(text, piece.clone());
                let stop = parsed.is_err();
                // The reader stops early only by unwinding: nothing is left to parse for.
                if sender.send(parsed).is_err() || stop {
                    return;
                }
            }
        });
        for parsed in receiver {
            read(parsed?);
        }
        Ok(())
    })
}

/// One piece's top-level tables, spans moved by the piece's offset.
fn parse_piece(text: &str, piece: Range<usize>) -> Result<Tables<'_>, ParseWhole> {
    let (document, errors) = DeTable::parse_recoverable(&text[piece.clone()]);
    if !errors.is_empty() {
        return Err(ParseWhole);
    }
    Ok(document
        .into_inner()
        .into_iter()
        .map(|(key, node)| (key, shifted(node, piece.start)))
        .collect())
}

/// A piece's node with every span (its own, its keys', its values') moved by `offset`: where
/// the same node would be in the whole file.
pub(super) fn shifted(node: Node<'_>, offset: usize) -> Node<'_> {
    let span = node.span();
    let value = match node.into_inner() {
        DeValue::Table(table) => DeValue::Table(shifted_table(table, offset)),
        DeValue::Array(mut array) => {
            for item in array.iter_mut() {
                let moved = shifted(
                    Spanned::new(
                        item.span(),
                        std::mem::replace(item.get_mut(), DeValue::Boolean(false)),
                    ),
                    offset,
                );
                *item = moved;
            }
            DeValue::Array(array)
        }
        value => value,
    };
    Spanned::new(span.start + offset..span.end + offset, value)
}

pub(super) fn shifted_table(table: DeTable<'_>, offset: usize) -> DeTable<'_> {
    table
        .into_iter()
        .map(|(key, node)| {
            let span = key.span();
            (
                Spanned::new(span.start + offset..span.end + offset, key.into_inner()),
                shifted(node, offset),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ferry_core::{Action, FieldSchema, OutputSchema, ResourceSpec};

    use super::*;

    #[derive(Debug)]
    struct HookRules;

    impl ferry_core::KindRules for HookRules {
        fn kind(&self) -> Kind {
            Kind::Hook
        }
        fn description(&self) -> &'static str {
            "a hook"
        }
        fn fields(&self) -> &'static [FieldSchema] {
            &[]
        }
        fn outputs(&self) -> &'static [OutputSchema] {
            &[]
        }
        fn estimate_seconds(&self, _action: Action, _spec: &ResourceSpec) -> u64 {
            0
        }
    }

    fn rules() -> RuleBook {
        RuleBook::new().with(Box::new(HookRules))
    }

    /// Every key and span of a node, in order, as text.
    fn spans(node: &Node<'_>, into: &mut Vec<String>) {
        into.push(format!("{:?}", node.span()));
        match node.get_ref() {
            DeValue::Table(table) => {
                for (key, value) in table {
                    into.push(format!("{}@{:?}", key.get_ref(), key.span()));
                    spans(value, into);
                }
            }
            DeValue::Array(array) => {
                for item in array.iter() {
                    spans(item, into);
                }
            }
            value => into.push(format!("{value:?}")),
        }
    }

    fn table_spans(table: &DeTable<'_>) -> Vec<String> {
        let mut into = Vec::new();
        for (key, value) in table {
            into.push(format!("{}@{:?}", key.get_ref(), key.span()));
            spans(value, &mut into);
        }
        into
    }

    const TEXT: &str = "[deployment]\nname = \"x\"\n\n[variables]\nzone = \"a\"\n\n\
        [hook.one]\ncommand = \"\"\"\nset -e\ntest -f /x && echo [x]\n\"\"\"\nlist = [1, [2, 3], { a = \"b\" }]\n\n\
        [ hook . two ] # a comment\nenv = { a = \"1\", b = [\"2\"] }\ndepends_on = [\"hook.one\"]\n\
        [hook.three]\ncommand = 'true'\n";

    #[test]
    fn pieces_give_the_whole_files_tables_and_spans() {
        let (whole, errors) = DeTable::parse_recoverable(TEXT);
        assert!(errors.is_empty(), "{errors:?}");
        let whole = whole.into_inner();
        // One resource a piece, the smallest pieces there can be.
        let cut = cut_at(TEXT, &rules(), 1).expect("the text is cut");
        assert_eq!(cut.pieces.len(), 3);
        let (head, errors) = DeTable::parse_recoverable(&TEXT[cut.head.clone()]);
        assert!(errors.is_empty(), "{errors:?}");
        let head = head.into_inner();
        assert!(!head_holds_resources(&head, &rules()));
        let mut from_pieces = table_spans(&head);
        // The map sorts by name, as the whole file's does.
        let mut hooks_from_pieces = DeTable::new();
        for piece in &cut.pieces {
            let (document, errors) = DeTable::parse_recoverable(&TEXT[piece.clone()]);
            assert!(errors.is_empty(), "{errors:?}");
            let (_, node) = document.into_inner().into_iter().next().unwrap();
            let DeValue::Table(resources) = node.into_inner() else {
                panic!("a piece holds a kind's table");
            };
            hooks_from_pieces.extend(shifted_table(resources, piece.start));
        }
        from_pieces.extend(table_spans(&hooks_from_pieces));
        let DeValue::Table(hooks) = whole.get("hook").unwrap().get_ref() else {
            panic!("the whole file holds hooks");
        };
        let mut expected = table_spans(&DeTable::from_iter(
            whole
                .iter()
                .filter(|(key, _)| key.get_ref() != "hook")
                .map(|(key, value)| (key.clone(), value.clone())),
        ));
        expected.extend(table_spans(hooks));
        assert_eq!(from_pieces, expected);
    }

    /// Many hooks, in an order their names do not sort in, one a piece.
    fn many_hooks(broken: Option<usize>) -> String {
        let mut text = String::from("[deployment]\nname = \"x\"\n");
        for number in (0..40).rev() {
            let value = if broken == Some(number) { "" } else { "'true'" };
            text.push_str(&format!(
                "[hook.h{number}]\ncommand = {value}\nenv = {{ n = [{number}] }}\n"
            ));
        }
        text
    }

    #[test]
    fn pieces_are_read_in_order_with_the_whole_files_spans() {
        let text = many_hooks(None);
        let cut = cut_at(&text, &rules(), 1).expect("the text is cut");
        assert_eq!(cut.pieces.len(), 40);
        let mut from_pieces = Vec::new();
        let parsed = parse_each(&text, &cut.pieces, |document| {
            for (_, node) in document {
                let DeValue::Table(resources) = node.into_inner() else {
                    panic!("a piece holds a kind's table");
                };
                from_pieces.extend(table_spans(&resources));
            }
        });
        assert_eq!(parsed, Ok(()));
        let (whole, errors) = DeTable::parse_recoverable(&text);
        assert!(errors.is_empty(), "{errors:?}");
        let DeValue::Table(hooks) = whole.get_ref().get("hook").unwrap().get_ref() else {
            panic!("the whole file holds hooks");
        };
        // In the file's order, which is not the map's.
        let mut expected = Vec::new();
        for number in (0..40).rev() {
            let name = format!("h{number}");
            let (key, node) = hooks
                .iter()
                .find(|(key, _)| **key.get_ref() == name)
                .unwrap();
            expected.extend(table_spans(&DeTable::from_iter([(
                key.clone(),
                node.clone(),
            )])));
        }
        assert_eq!(from_pieces, expected);
    }

    #[test]
    fn a_syntax_error_in_a_piece_stops_the_pieces_for_the_whole_files_parse() {
        let text = many_hooks(Some(20));
        let cut = cut_at(&text, &rules(), 1).expect("the text is cut");
        let mut read = Vec::new();
        let parsed = parse_each(&text, &cut.pieces, |document| {
            for (_, node) in document {
                let DeValue::Table(resources) = node.into_inner() else {
                    panic!("a piece holds a kind's table");
                };
                read.extend(resources.keys().map(|key| key.get_ref().to_string()));
            }
        });
        assert_eq!(parsed, Err(ParseWhole));
        // Hooks 39 down to 21 come before the broken one, and nothing after it is read.
        let expected: Vec<String> = (21..40).rev().map(|number| format!("h{number}")).collect();
        assert_eq!(read, expected);
        // A single piece is parsed without a thread, and stops the same way.
        let single = cut.pieces[0].start..text.len();
        assert_eq!(
            parse_each(&text, std::slice::from_ref(&single), |_| {}),
            Err(ParseWhole)
        );
    }

    #[test]
    fn a_file_is_parsed_whole_when_a_piece_could_differ() {
        let rules = rules();
        // A sub-table, an array of tables, a block after the resources, a quoted key, a
        // resource written twice, and a line of a multi-line string that starts with `[`.
        for text in [
            "[hook.a]\ncommand = \"x\"\n[hook.a.env]\nb = \"c\"\n",
            "[hook.a]\n[[hook.b.list]]\n",
            "[hook.a]\ncommand = \"x\"\n[variables]\nx = \"y\"\n",
            "[hook.a]\n[hook.\"b\"]\n",
            "[hook.a]\n[hook.a]\n",
            "[hook.a]\ncommand = \"\"\"\n[ -f /x ]\n\"\"\"\n",
        ] {
            assert!(cut_at(text, &rules, 1).is_none(), "{text}");
        }
        // Headers of unknown kinds before the resources belong to the head.
        let cut = cut_at("[deployment]\n[nothing.x]\n[hook.a]\n[hook.b]\n", &rules, 1).unwrap();
        assert_eq!(cut.head, 0..25);
        assert_eq!(cut.pieces, vec![25..34, 34..43]);
        // A header may be indented; a `[` after other text on its line starts no header.
        let text = "x = [1]\n\t [hook.a]\ny = \"[hook.c]\"\r\n[hook.b] # [hook.d]\nz = [[2]]";
        let cut = cut_at(text, &rules, 1).unwrap();
        assert_eq!(cut.head, 0..8);
        assert_eq!(cut.pieces, vec![8..35, 35..text.len()]);
        // A line of an array that starts with `[` is no plain header: the file is parsed whole.
        assert!(cut_at("[hook.a]\r\nlist = [\r\n  [1],\r\n]\r\n", &rules, 1).is_none());
    }
}
