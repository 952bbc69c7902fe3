//! The filter AST. Produced by [`super::parse`], consumed by [`super::compile`].

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(Cmp),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cmp {
    pub left: Operand,
    pub op: Op,
    /// The `?` form: holds if any item of a multi-valued side matches.
    pub any: bool,
    pub right: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    NotLike,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
    /// A field path, `@request.*`, `@collection.*` or a macro such as `@now`, modifiers included.
    Ident(String),
    Func(String, Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortItem {
    pub field: String,
    pub desc: bool,
}
