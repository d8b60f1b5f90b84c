//! SQL text as the database decoders (PostgreSQL, MySQL) report it: a query split into its
//! statements, literals (numbers, quoted and dollar-quoted strings) replaced by `?`, and the
//! leading keyword. A small lexer, not a parser: it only has to know where strings and
//! comments end, which is where the two dialects differ.

/// Whose rules for strings and comments apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `'..'` without backslash escapes (standard_conforming_strings), `E'..'` with them,
    /// `$tag$..$tag$`, `"identifiers"`, nested `/* */` comments.
    Postgres,
    /// MySQL and MariaDB with their default SQL mode: `'..'` and `".."` are strings with
    /// backslash escapes, `` `identifiers` ``, `#` and `-- ` comments, `/* */` not nested
    /// (an executable `/*! .. */` comment is lexed as SQL, so its literals are redacted too).
    Mysql,
}

/// One lexical piece of SQL that matters here.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece {
    /// A string literal ('...', E'...', $tag$...$tag$) or a number: replaced when redacting.
    Literal,
    /// `;` outside strings and comments: ends a statement.
    Semicolon,
    /// Anything else (identifiers, operators, comments, whitespace, `$1`), kept as written.
    Other,
}

/// Walks `sql` and calls `f(piece, start, end)` for consecutive byte ranges covering it.
fn lex(d: Dialect, sql: &str, mut f: impl FnMut(Piece, usize, usize)) {
    let my = d == Dialect::Mysql;
    let b = sql.as_bytes();
    let n = b.len();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    while i < n {
        let c = b[i];
        let start = i;
        let prev_ident = start > 0 && (ident(b[start - 1]) || b[start - 1] == b'$');
        match c {
            b'\'' => {
                // E'..' takes backslash escapes; the prefix letter goes with the literal.
                let escapes = my
                    || start > 0
                        && matches!(b[start - 1], b'e' | b'E')
                        && (start < 2 || !ident(b[start - 2]));
                i = string_end(b, i + 1, b'\'', escapes);
                f(Piece::Literal, start, i);
            }
            b'"' if my => {
                i = string_end(b, i + 1, b'"', true);
                f(Piece::Literal, start, i);
            }
            b'"' => {
                i = string_end(b, i + 1, b'"', false);
                f(Piece::Other, start, i);
            }
            b'`' if my => {
                i = string_end(b, i + 1, b'`', false);
                f(Piece::Other, start, i);
            }
            // MySQL's `--` starts a comment only when a space or control character follows.
            b'#' if my => {
                i = memchr::memchr(b'\n', &b[i..]).map_or(n, |j| i + j);
                f(Piece::Other, start, i);
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && (!my || b.get(i + 2).is_none_or(|c| *c <= b' ')) =>
            {
                i = memchr::memchr(b'\n', &b[i..]).map_or(n, |j| i + j);
                f(Piece::Other, start, i);
            }
            b'/' if my && b.get(i + 1) == Some(&b'*') => {
                // `/*!50001 ..*/` and `/*M!100100 ..*/` run on the server: their opening is
                // skipped and the rest lexed as SQL (the closing `*/` lexes as two symbols).
                let bang = match b.get(i + 2) {
                    Some(b'!') => Some(i + 3),
                    Some(b'M') if b.get(i + 3) == Some(&b'!') => Some(i + 4),
                    _ => None,
                };
                match bang {
                    Some(mut j) => {
                        while j < n && b[j].is_ascii_digit() {
                            j += 1;
                        }
                        i = j;
                    }
                    None => {
                        i = memchr::memmem::find(&b[i + 2..], b"*/").map_or(n, |j| i + 2 + j + 2);
                    }
                }
                f(Piece::Other, start, i);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Comments nest in PostgreSQL.
                let mut depth = 1;
                i += 2;
                while i < n && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                f(Piece::Other, start, i);
            }
            b'$' if !my && !prev_ident => match dollar_tag(b, i) {
                Some(tag_end) => {
                    let tag = &b[i..tag_end];
                    i = memchr::memmem::find(&b[tag_end..], tag)
                        .map_or(n, |j| tag_end + j + tag.len());
                    f(Piece::Literal, start, i);
                }
                None => {
                    // `$1`: a parameter, kept.
                    i += 1;
                    while i < n && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    f(Piece::Other, start, i);
                }
            },
            b';' => {
                i += 1;
                f(Piece::Semicolon, start, i);
            }
            b'0'..=b'9' if !prev_ident => {
                i = number_end(b, i);
                f(Piece::Literal, start, i);
            }
            b'.' if !prev_ident && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = number_end(b, i);
                f(Piece::Literal, start, i);
            }
            _ if ident(c) => {
                while i < n && (ident(b[i]) || b[i] == b'$') {
                    i += 1;
                }
                // A string prefix (E'', B'', X'', N'') belongs to the literal that follows.
                if i - start == 1 && b.get(i) == Some(&b'\'') && b"eEbBxXnN".contains(&c) {
                    let escapes = matches!(c, b'e' | b'E');
                    i = string_end(b, i + 1, b'\'', escapes);
                    f(Piece::Literal, start, i);
                } else {
                    f(Piece::Other, start, i);
                }
            }
            _ => {
                // One UTF-8 character (the lexer only ever cuts at ASCII bytes).
                i += 1;
                while i < n && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
                f(Piece::Other, start, i);
            }
        }
    }
}

/// The end of a quoted string whose body starts at `i` (after a doubled quote, or a
/// backslash-escaped one when `escapes`); the end of `b` when it is not closed.
fn string_end(b: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `$tag$` or `$$` at `i`: where the opening tag ends.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        if j == i + 1 && b[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

/// A numeric constant: digits, a fraction, an exponent, `0x..`, `_` separators.
fn number_end(b: &[u8], mut i: usize) -> usize {
    let n = b.len();
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
        i += 2;
        while i < n && (b[i].is_ascii_hexdigit() || b[i] == b'_') {
            i += 1;
        }
        return i;
    }
    while i < n && (b[i].is_ascii_digit() || b[i] == b'_' || b[i] == b'.') {
        i += 1;
    }
    if i < n && matches!(b[i], b'e' | b'E') {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// `sql` with every literal replaced by `?`.
pub fn redact(d: Dialect, sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    lex(d, sql, |p, s, e| match p {
        Piece::Literal => out.push('?'),
        _ => out.push_str(&sql[s..e]),
    });
    out
}

/// The statements of a simple Query, trimmed, empty ones left out (the server runs each
/// separately and answers each with its own CommandComplete or ErrorResponse).
pub fn split(d: Dialect, sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    lex(d, sql, |p, s, e| {
        if p == Piece::Semicolon {
            push_statement(d, &mut out, &sql[from..s]);
            from = e;
        }
    });
    push_statement(d, &mut out, &sql[from..]);
    out
}

fn push_statement<'a>(d: Dialect, out: &mut Vec<&'a str>, s: &'a str) {
    let t = s.trim();
    if !t.is_empty() && !only_comments(d, t) {
        out.push(t);
    }
}

fn only_comments(d: Dialect, s: &str) -> bool {
    let mut only = true;
    lex(d, s, |p, a, e| {
        let part = &s[a..e];
        let comment = part.starts_with("--")
            || part.starts_with("/*") && !part.starts_with("/*!") && !part.starts_with("/*M!")
            || d == Dialect::Mysql && part.starts_with('#');
        if p != Piece::Other || !(comment || part.trim().is_empty()) {
            only = false;
        }
    });
    only
}

/// The statement's first keyword in upper case (`SELECT`, `INSERT`...), past comments and
/// opening parentheses; `WITH` queries are named by what they end in only by the server's tag.
pub fn first_keyword(d: Dialect, sql: &str) -> Option<String> {
    let mut word = None;
    lex(d, sql, |p, s, e| {
        if word.is_some() || p != Piece::Other {
            return;
        }
        let part = &sql[s..e];
        if part.as_bytes()[0].is_ascii_alphabetic() {
            word = Some(part.to_ascii_uppercase());
        }
    });
    word.filter(|w| w.len() <= 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    const PG: Dialect = Dialect::Postgres;
    const MY: Dialect = Dialect::Mysql;

    #[test]
    fn literals_become_question_marks() {
        assert_eq!(
            redact(
                PG,
                "INSERT INTO items VALUES (1, 'apple', 1.5), (3, 'it''s', -3e10)"
            ),
            "INSERT INTO items VALUES (?, ?, ?), (?, ?, -?)"
        );
        assert_eq!(
            redact(
                PG,
                "SELECT * FROM t2 WHERE a = $1 AND b = E'x\\'y' AND c = $$a;b$$ AND d = $q$ $$ $q$"
            ),
            "SELECT * FROM t2 WHERE a = $1 AND b = ? AND c = ? AND d = ?"
        );
        assert_eq!(
            redact(PG, "SELECT x'1F', .5, 0x1f, col1"),
            "SELECT ?, ?, ?, col1"
        );
        // Identifiers and comments are kept; a quoted identifier is not a literal.
        assert_eq!(
            redact(
                PG,
                "SELECT \"it's\" /* id 7 */ FROM t -- 'note'\nWHERE n = 1"
            ),
            "SELECT \"it's\" /* id 7 */ FROM t -- 'note'\nWHERE n = ?"
        );
        // Not closed: the rest is the literal.
        assert_eq!(redact(PG, "SELECT 'secret"), "SELECT ?");
        assert_eq!(redact(PG, "SELECT 'é', 'ü' || name"), "SELECT ?, ? || name");
    }

    #[test]
    fn a_query_splits_at_semicolons_outside_strings_and_comments() {
        assert_eq!(
            split(
                PG,
                "SELECT 1; UPDATE t SET a = ';' WHERE b = $$;$$ ;  -- c;\n; SELECT 2 /* ; */"
            ),
            vec![
                "SELECT 1",
                "UPDATE t SET a = ';' WHERE b = $$;$$",
                "SELECT 2 /* ; */"
            ]
        );
        assert_eq!(split(PG, "  ;; "), Vec::<&str>::new());
        assert_eq!(split(PG, "select 1"), vec!["select 1"]);
    }

    #[test]
    fn the_operation_is_the_first_keyword() {
        assert_eq!(
            first_keyword(PG, "  /* x */ (select 1)").as_deref(),
            Some("SELECT")
        );
        assert_eq!(
            first_keyword(PG, "insert into t values (1)").as_deref(),
            Some("INSERT")
        );
        assert_eq!(first_keyword(PG, "-- only\n").as_deref(), None);
    }

    #[test]
    fn mysql_strings_escape_with_backslashes_and_double_quotes_are_strings() {
        assert_eq!(
            redact(
                MY,
                "SELECT * FROM `it's` WHERE a = 'x\\'y' AND b = \"pw\" AND c = 0x1F"
            ),
            "SELECT * FROM `it's` WHERE a = ? AND b = ? AND c = ?"
        );
        // `$` is part of identifiers in MySQL, never a quote.
        assert_eq!(redact(MY, "SELECT $a, 'q' FROM t"), "SELECT $a, ? FROM t");
        // Comments: `#`, `-- `, `/* */`; `--` glued to a value is two minus signs.
        assert_eq!(
            redact(MY, "SELECT 1--2 # 'c'\n, 3 -- 'c'\n/* 'k' */"),
            "SELECT ?--? # 'c'\n, ? -- 'c'\n/* 'k' */"
        );
        // An executable comment runs: its literals are redacted.
        assert_eq!(
            redact(MY, "SELECT /*!50001 'secret', */ 1"),
            "SELECT /*!50001 ?, */ ?"
        );
        assert_eq!(
            split(MY, "SELECT ';'; INSERT INTO t VALUES (\"a;b\"); # x;\n"),
            vec!["SELECT ';'", "INSERT INTO t VALUES (\"a;b\")"]
        );
        assert_eq!(
            first_keyword(MY, "# c\n  select 1").as_deref(),
            Some("SELECT")
        );
    }
}
