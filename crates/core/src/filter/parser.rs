//! Lexer and recursive-descent parser for filters and sorts. Input is untrusted: every limit is
//! enforced here and every failure is a [`ParseError`], never a panic.

use super::ast::{Cmp, Expr, Op, Operand, SortItem};

pub const MAX_FILTER_LEN: usize = 3500;
pub const MAX_EXPRESSIONS: usize = 200;
pub const MAX_SORT_FIELDS: usize = 8;
const MAX_GROUP_DEPTH: usize = 32;
const MAX_FUNC_DEPTH: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(Op, bool),
    And,
    Or,
    LParen,
    RParen,
    Comma,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '@' || c == '#'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == ':' || c == '@' || c == '#'
}

fn lex(src: &str) -> Result<Vec<Tok>, ParseError> {
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        match ch {
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '&' if c.get(i + 1) == Some(&'&') => {
                out.push(Tok::And);
                i += 2;
            }
            '|' if c.get(i + 1) == Some(&'|') => {
                out.push(Tok::Or);
                i += 2;
            }
            '\'' | '"' => {
                let q = ch;
                let mut s = String::new();
                i += 1;
                let mut closed = false;
                while i < c.len() {
                    if c[i] == '\\' && i + 1 < c.len() {
                        s.push(c[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c[i] == q {
                        closed = true;
                        i += 1;
                        break;
                    }
                    s.push(c[i]);
                    i += 1;
                }
                if !closed {
                    return err("unterminated string");
                }
                out.push(Tok::Str(s));
            }
            '?' | '=' | '!' | '>' | '<' | '~' => {
                let any = ch == '?';
                let j = if any { i + 1 } else { i };
                let a = c.get(j).copied();
                let b = c.get(j + 1).copied();
                let (op, len) = match (a, b) {
                    (Some('!'), Some('=')) => (Op::Neq, 2),
                    (Some('!'), Some('~')) => (Op::NotLike, 2),
                    (Some('>'), Some('=')) => (Op::Gte, 2),
                    (Some('<'), Some('=')) => (Op::Lte, 2),
                    (Some('='), _) => (Op::Eq, 1),
                    (Some('>'), _) => (Op::Gt, 1),
                    (Some('<'), _) => (Op::Lt, 1),
                    (Some('~'), _) => (Op::Like, 1),
                    _ => return err(format!("invalid operator at position {i}")),
                };
                out.push(Tok::Op(op, any));
                i = j + len;
            }
            _ if ch.is_ascii_digit()
                || (ch == '-' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < c.len() && c[i].is_ascii_digit() {
                    i += 1;
                }
                if i < c.len() && c[i] == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                    i += 1;
                    while i < c.len() && c[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let text: String = c[start..i].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => out.push(Tok::Num(n)),
                    _ => return err("invalid number"),
                }
            }
            _ if is_ident_start(ch) => {
                let start = i;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(c[start..i].iter().collect()));
            }
            _ => return err(format!("unexpected character {ch:?}")),
        }
        if out
            .last()
            .is_some_and(|t| matches!(t, Tok::Str(s) if s.contains('\0')))
        {
            return err("null characters are not allowed");
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    exprs: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.primary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.primary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_GROUP_DEPTH {
                return err("too deeply nested");
            }
            let e = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Tok::RParen) {
                return err("missing closing parenthesis");
            }
            return Ok(e);
        }
        self.exprs += 1;
        if self.exprs > MAX_EXPRESSIONS {
            return err(format!("too many expressions (max {MAX_EXPRESSIONS})"));
        }
        let left = self.operand(0)?;
        let (op, any) = match self.next() {
            Some(Tok::Op(op, any)) => (op, any),
            _ => return err("expected a comparison operator"),
        };
        let right = self.operand(0)?;
        Ok(Expr::Cmp(Cmp {
            left,
            op,
            any,
            right,
        }))
    }

    fn operand(&mut self, fdepth: usize) -> Result<Operand, ParseError> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(Operand::Num(n)),
            Some(Tok::Str(s)) => Ok(Operand::Str(s)),
            Some(Tok::Ident(id)) => {
                if self.peek() == Some(&Tok::LParen) {
                    if fdepth >= MAX_FUNC_DEPTH {
                        return err("functions nest at most 2 levels");
                    }
                    self.pos += 1;
                    let mut args = vec![];
                    if self.peek() != Some(&Tok::RParen) {
                        loop {
                            args.push(self.operand(fdepth + 1)?);
                            match self.next() {
                                Some(Tok::Comma) => continue,
                                Some(Tok::RParen) => break,
                                _ => return err("malformed function arguments"),
                            }
                        }
                    } else {
                        self.pos += 1;
                    }
                    return Ok(Operand::Func(id, args));
                }
                Ok(match id.as_str() {
                    "null" => Operand::Null,
                    "true" => Operand::Bool(true),
                    "false" => Operand::Bool(false),
                    _ => {
                        if id.ends_with('.') || id.contains("..") || id.starts_with('.') {
                            return err(format!("invalid identifier {id:?}"));
                        }
                        Operand::Ident(id)
                    }
                })
            }
            _ => err("expected an operand"),
        }
    }
}

/// Parses a filter or rule. An empty (or comment-only) input is an error; callers treat `""` rules as
/// "public" before calling this.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_FILTER_LEN {
        return err(format!("filter too long (max {MAX_FILTER_LEN} characters)"));
    }
    let toks = lex(src)?;
    if toks.is_empty() {
        return err("empty expression");
    }
    let mut p = Parser {
        toks,
        pos: 0,
        exprs: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return err("unexpected trailing input");
    }
    Ok(e)
}

/// Parses a sort list: `-a,+b,c`, `@random`, `@rowid`, relation paths.
pub fn parse_sort(src: &str) -> Result<Vec<SortItem>, ParseError> {
    let mut out = vec![];
    for part in src.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (desc, name) = match part.as_bytes()[0] {
            b'-' => (true, &part[1..]),
            b'+' => (false, &part[1..]),
            _ => (false, part),
        };
        let name = name.trim();
        let ok = !name.is_empty()
            && name.chars().next().is_some_and(is_ident_start)
            && name.chars().all(is_ident_char)
            && !name.contains("..")
            && !name.ends_with('.');
        if !ok {
            return err(format!("invalid sort field {name:?}"));
        }
        out.push(SortItem {
            field: name.to_string(),
            desc,
        });
        if out.len() > MAX_SORT_FIELDS {
            return err(format!("too many sort fields (max {MAX_SORT_FIELDS})"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_and_groups() {
        let e = parse("a = 1 && (b != 'x' || c ?~ \"y\") // trailing comment").unwrap();
        let Expr::And(items) = e else {
            panic!("not and")
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Expr::Or(_)));
    }

    #[test]
    fn parses_operands() {
        let e = parse("@request.auth.id != '' && tags:length > -2.5 && created > @now && x = null")
            .unwrap();
        let Expr::And(items) = e else { panic!() };
        assert_eq!(items.len(), 4);
        let Expr::Cmp(c) = &items[1] else { panic!() };
        assert_eq!(c.left, Operand::Ident("tags:length".into()));
        assert_eq!(c.right, Operand::Num(-2.5));
        let e = parse("geoDistance(lon, lat, 1, 2) < 25").unwrap();
        assert!(matches!(
            e,
            Expr::Cmp(Cmp {
                left: Operand::Func(..),
                ..
            })
        ));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "",
            "a",
            "a =",
            "= 1",
            "a = 'x",
            "(a = 1",
            "a = 1)",
            "a == 1 &&",
            "a = 1 b = 2",
            "a;b = 1",
            "a = 1 | b = 2",
            "a. = 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse("a = 1 && ".repeat(201).trim_end_matches("&& ")).is_err());
        assert!(parse(&format!("{}a = 1{}", "(".repeat(100), ")".repeat(100))).is_err());
        assert!(parse(&"x".repeat(3501)).is_err());
    }

    #[test]
    fn parses_sort() {
        let s = parse_sort("-created,+title, author.name,@random").unwrap();
        assert_eq!(s.len(), 4);
        assert!(s[0].desc && !s[1].desc);
        assert!(parse_sort("a;drop").is_err());
        assert!(parse_sort("a,b,c,d,e,f,g,h,i").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics(s in ".{0,200}") {
            let _ = parse(&s);
            let _ = parse_sort(&s);
        }

        #[test]
        fn parser_never_panics_on_filter_like_input(s in "[a-z@._:()'\" 0-9=!<>~?&|,-]{0,120}") {
            let _ = parse(&s);
        }
    }
}
