//! A script file in pgbench's script language (PostgreSQL 15, pgbench(1), "Custom Scripts"),
//! the subset roachlab runs, into [`Script`]:
//!
//! - SQL commands end at a `;` outside quotes and may span lines; the last may omit it; `--`
//!   comments are dropped. `:name` is replaced by the variable's value (pgbench's simple
//!   query mode); `::` (a cast) and anything inside `'…'` or `"…"` are left alone.
//! - A line whose first non-blank character is `\` is a meta-command, to the end of the line
//!   (a `\` just before the newline continues it): `\set name expression` and
//!   `\sleep number [us | ms | s]` (the number may be `:name`; seconds by default).
//! - `BEGIN` (or `START TRANSACTION`) … `COMMIT` (or `END`) is one explicit transaction;
//!   any other SQL command outside one is an implicit transaction of its own.
//!
//! Anything else — another meta-command, `ROLLBACK`, nested `BEGIN`, a variable read before
//! any `\set` gives it a value — is refused with its line and column before anything runs.

use super::expr::{self, Expr};
use super::{Action, Script, SqlPart, Unit, PREDEFINED};

/// A parse error: byte offset in the file and message.
pub type ParseError = (usize, String);

/// Parses a script's text.
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let mut units = Vec::new();
    // The explicit transaction being read: where its BEGIN was, and its actions.
    let mut open: Option<(usize, Vec<Action>)> = None;
    let mut set: Vec<String> = PREDEFINED.iter().map(|s| s.to_string()).collect();
    let mut pos = 0;
    let b = text.as_bytes();
    loop {
        // Blank space and comments between commands.
        while pos < b.len() {
            if b[pos].is_ascii_whitespace() {
                pos += 1;
            } else if text[pos..].starts_with("--") {
                pos = text[pos..].find('\n').map_or(b.len(), |i| pos + i);
            } else {
                break;
            }
        }
        if pos >= b.len() {
            break;
        }
        let action = if b[pos] == b'\\' {
            let (end, line) = meta_line(text, pos);
            let a = meta(&line, pos, &mut set)?;
            pos = end;
            a
        } else {
            let (end, parts) = sql(text, pos, &set)?;
            let at = pos;
            pos = end;
            let first = parts.iter().find_map(|p| if let SqlPart::Text(t) = p { Some(t.as_str()) } else { None }).unwrap_or("");
            let words: Vec<String> = first.split_whitespace().take(2).map(|w| w.to_ascii_uppercase()).collect();
            let words: Vec<&str> = words.iter().map(|w| w.trim_end_matches(';')).collect();
            match words.as_slice() {
                ["BEGIN", ..] | ["START", "TRANSACTION"] => {
                    if open.is_some() {
                        return Err((at, "BEGIN inside an open transaction: transactions do not nest (COMMIT the first)".into()));
                    }
                    open = Some((at, Vec::new()));
                    continue;
                }
                ["COMMIT", ..] | ["END", ..] => {
                    let Some((_, actions)) = open.take() else {
                        return Err((at, "COMMIT without BEGIN".into()));
                    };
                    units.push(Unit::Transaction { explicit: true, actions });
                    continue;
                }
                ["ROLLBACK", ..] | ["ABORT", ..] | ["SAVEPOINT", ..] | ["RELEASE", ..] | ["PREPARE", "TRANSACTION"] => {
                    return Err((
                        at,
                        format!(
                            "`{}` is not run by roachlab's scripts: a transaction is BEGIN … COMMIT, and roachlab classifies its outcome and retries it",
                            words.join(" ")
                        ),
                    ));
                }
                _ => Action::Sql { parts, at },
            }
        };
        match (&mut open, action) {
            (Some((_, actions)), a) => actions.push(a),
            (None, a @ Action::Sql { .. }) => units.push(Unit::Transaction { explicit: false, actions: vec![a] }),
            (None, a) => units.push(Unit::Meta(a)),
        }
    }
    if let Some((at, _)) = open {
        return Err((at, "this BEGIN has no COMMIT before the end of the script".into()));
    }
    if !units.iter().any(|u| matches!(u, Unit::Transaction { .. })) {
        return Err((0, "the script has no SQL command: give at least one statement".into()));
    }
    Ok(Script { units, check: None })
}

/// The meta-command starting at `pos` (a `\`): its end, and its text with continuations
/// joined (each `\`-newline becomes a space, keeping byte offsets within a line meaningful).
fn meta_line(text: &str, pos: usize) -> (usize, String) {
    let mut line = String::new();
    let mut i = pos;
    loop {
        let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
        let part = &text[i..end];
        if let Some(cont) = part.strip_suffix('\\').filter(|_| end < text.len()) {
            line.push_str(cont);
            line.push(' ');
            i = end + 1;
        } else {
            line.push_str(part.trim_end_matches('\r'));
            return (end, line);
        }
    }
}

/// A meta-command's line (at byte `at`): `\set` or `\sleep`. `set` holds the variables set
/// so far; `\set` adds its own.
fn meta(line: &str, at: usize, set: &mut Vec<String>) -> Result<Action, ParseError> {
    let mut words = line.splitn(2, char::is_whitespace);
    let command = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("").trim();
    let args_at = at + line.len() - line[command.len()..].trim_start().len();
    match command {
        "\\set" => {
            let mut it = rest.splitn(2, char::is_whitespace);
            let name = it.next().unwrap_or("");
            if name.is_empty() || !valid_name(name) {
                return Err((args_at, format!("`\\set` needs a variable name (letters, digits, _), not `{name}`")));
            }
            let text = it.next().unwrap_or("").trim_start();
            let expr_at = at + line.len() - text.len();
            if text.is_empty() {
                return Err((expr_at, format!("`\\set {name}` needs an expression")));
            }
            let expr = expr::parse(text).map_err(|(i, m)| (expr_at + i, m))?;
            check_vars(&expr, set, text, expr_at)?;
            set.push(name.to_string());
            Ok(Action::Set { name: name.to_string(), expr })
        }
        "\\sleep" => {
            let mut it = rest.split_whitespace();
            let amount = it.next().unwrap_or("");
            let unit = it.next().unwrap_or("s");
            let us = match unit {
                "us" => 1,
                "ms" => 1000,
                "s" => 1_000_000,
                other => return Err((args_at, format!("`\\sleep` takes us, ms or s, not `{other}`"))),
            };
            if let Some(extra) = it.next() {
                return Err((args_at, format!("unexpected `{extra}` after `\\sleep {amount} {unit}`")));
            }
            let expr = match amount.strip_prefix(':') {
                Some(v) if valid_name(v) => Expr::Var(v.to_string()),
                _ => match amount.parse::<i64>() {
                    Ok(n) if n >= 0 => Expr::Const(expr::Value::Int(n)),
                    _ => return Err((args_at, format!("`\\sleep` takes a whole number or :variable, not `{amount}`"))),
                },
            };
            check_vars(&expr, set, amount, args_at)?;
            Ok(Action::Sleep { amount: expr, unit_us: us })
        }
        other => Err((
            at,
            format!(
                "`{other}` is not a meta-command roachlab runs (\\set and \\sleep; pgbench's others, such as \\gset, are not supported)"
            ),
        )),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Refuses a variable `expr` reads that no earlier `\set` gives a value (nor [`PREDEFINED`]).
fn check_vars(expr: &Expr, set: &[String], text: &str, at: usize) -> Result<(), ParseError> {
    let mut used = Vec::new();
    expr.vars(&mut used);
    for v in used {
        if !set.contains(&v) {
            let i = text.find(&format!(":{v}")).unwrap_or(0);
            return Err((at + i, unset(&v)));
        }
    }
    Ok(())
}

fn unset(name: &str) -> String {
    format!("variable :{name} is read before any `\\set {name} …` gives it a value (predefined: {})", PREDEFINED.join(", "))
}

/// The SQL command starting at `pos`: its end (after the `;`) and its parts.
fn sql(text: &str, pos: usize, set: &[String]) -> Result<(usize, Vec<SqlPart>), ParseError> {
    let b = text.as_bytes();
    let mut parts = Vec::new();
    let mut buf = String::new();
    let mut i = pos;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else if c == b'\'' || c == b'"' {
            quote = Some(c);
        } else if c == b';' {
            i += 1;
            break;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            buf.push('\n');
            continue;
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            buf.push_str("::");
            i += 2;
            continue;
        } else if c == b':' {
            let name: String = text[i + 1..].chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_').collect();
            if valid_name(&name) {
                if !set.contains(&name) {
                    return Err((i, unset(&name)));
                }
                parts.push(SqlPart::Text(std::mem::take(&mut buf)));
                parts.push(SqlPart::Var(name.clone()));
                i += 1 + name.len();
                continue;
            }
        }
        // Whole UTF-8 characters: `i` is always at a character boundary here.
        let ch = text[i..].chars().next().unwrap_or(' ');
        buf.push(ch);
        i += ch.len_utf8();
    }
    if let Some(q) = quote {
        return Err((pos, format!("this SQL command's {} quote is not closed", if q == b'\'' { "single" } else { "double" })));
    }
    parts.push(SqlPart::Text(buf));
    // Leading and trailing blank space off.
    if let Some(SqlPart::Text(t)) = parts.first_mut() {
        *t = t.trim_start().to_string();
    }
    if let Some(SqlPart::Text(t)) = parts.last_mut() {
        *t = t.trim_end().to_string();
    }
    parts.retain(|p| !matches!(p, SqlPart::Text(t) if t.is_empty()));
    Ok((i, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(a: &Action) -> String {
        let Action::Sql { parts, .. } = a else { return String::new() };
        parts
            .iter()
            .map(|p| match p {
                SqlPart::Text(t) => t.clone(),
                SqlPart::Var(v) => format!("<{v}>"),
            })
            .collect()
    }

    #[test]
    fn transactions_statements_and_meta_commands() {
        let s = parse(
            "-- a comment\n\\set id random(1, \\\n 100)\n\\set v random_gaussian(0, 1000, 2.5) / 10.0\nBEGIN;\n\
             INSERT INTO t VALUES (:id, :v, 'a:b;c', now()::STRING); -- why\n\\sleep 5 ms\nUPDATE t\n  SET n = n + 1 WHERE id = :id;\nEND;\n\
             SELECT count(*) FROM t WHERE id = :id",
        )
        .unwrap();
        assert_eq!(s.units.len(), 4, "{s:?}");
        assert!(matches!(&s.units[0], Unit::Meta(Action::Set { name, .. }) if name == "id"));
        let Unit::Transaction { explicit: true, actions } = &s.units[2] else { panic!("{s:?}") };
        assert_eq!(actions.len(), 3);
        assert_eq!(texts(&actions[0]), "INSERT INTO t VALUES (<id>, <v>, 'a:b;c', now()::STRING)");
        assert!(matches!(actions[1], Action::Sleep { unit_us: 1000, .. }));
        assert_eq!(texts(&actions[2]), "UPDATE t\n  SET n = n + 1 WHERE id = <id>");
        let Unit::Transaction { explicit: false, actions } = &s.units[3] else { panic!("{s:?}") };
        assert_eq!(texts(&actions[0]), "SELECT count(*) FROM t WHERE id = <id>");
    }

    /// Each error points at its line and column (offsets here; the caller turns them into
    /// file:line:col).
    #[test]
    fn what_it_does_not_run_is_refused_where_it_stands() {
        let cases = [
            ("SELECT :nope;", 7, "variable :nope is read before any `\\set nope"),
            ("\\set a :b + 1\n", 7, "variable :b"),
            ("\\gset\nSELECT 1;", 0, "`\\gset` is not a meta-command roachlab runs"),
            ("\\set 1x 5\nSELECT 1;", 5, "needs a variable name"),
            ("\\set x 1 +\nSELECT 1;", 10, "a value was expected"),
            ("\\sleep 10 min\nSELECT 1;", 7, "us, ms or s"),
            ("BEGIN;\nSELECT 1;\nBEGIN;", 17, "do not nest"),
            ("SELECT 1;\nCOMMIT;", 10, "COMMIT without BEGIN"),
            ("BEGIN;\nSELECT 1;", 0, "no COMMIT"),
            ("BEGIN;\nROLLBACK;", 7, "`ROLLBACK` is not run"),
            ("SELECT 'open;", 0, "single quote is not closed"),
            ("\\set x 1", 0, "no SQL command"),
        ];
        for (text, at, words) in cases {
            let (got_at, message) = parse(text).unwrap_err();
            assert!(message.contains(words), "{text:?}: {message}");
            assert_eq!(got_at, at, "{text:?}: {message}");
        }
        // A predefined variable, a variable set later in the file than read is not.
        assert!(parse("SELECT :client_id;").is_ok());
        assert!(parse("SELECT 1::INT, '12:30';").is_ok());
    }
}
