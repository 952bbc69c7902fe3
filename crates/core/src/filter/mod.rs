//! The filter and sort language (§11 of the protocol): a lexer and parser into [`ast`], and a compiler
//! ([`compile`]) to parameterised SQL per dialect.

pub mod ast;
pub mod compile;
mod parser;

pub use parser::{parse, parse_sort, ParseError, MAX_EXPRESSIONS, MAX_FILTER_LEN, MAX_SORT_FIELDS};
