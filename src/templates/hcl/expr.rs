//! Unevaluated expressions: what the model keeps, how references are found, and the rewrite
//! that makes Terraform's implicit conversions explicit for hcl-rs's evaluator.

use hcl::edit::Span;
use hcl::eval::{Context, Evaluate};
use hcl::expr::{
    BinaryOperator, Expression, FuncCall, FuncName, ObjectKey, Operation, TemplateExpr,
    TraversalOperator, UnaryOperator,
};
use hcl::template::{Directive, Element, Template};
use hcl::{Identifier, Value};

/// An attribute value as written in the template, kept for evaluation at build time.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    expr: Expression,
    /// `expr` with Terraform's implicit conversions made explicit (see [`coerce`]).
    eval: Expression,
    /// The value when the expression needs no variables and no functions.
    literal: Option<Value>,
}

impl Expr {
    /// Parses one expression (useful for tests and for callers building models by hand).
    pub fn parse(source: &str) -> Result<Expr, hcl::Error> {
        let parsed: hcl::edit::expr::Expression = source.parse()?;
        Ok(Expr::from_parts(source.trim().to_owned(), parsed.into()))
    }

    /// Wraps an expression of a parsed file; `file_source` is the file it was parsed from, so
    /// the raw text can be kept exactly (hcl-rs's formatter mangles quoted templates).
    pub(crate) fn from_edit(expr: &hcl::edit::expr::Expression, file_source: &str) -> Expr {
        let converted: Expression = expr.clone().into();
        let source = expr
            .span()
            .and_then(|span| file_source.get(span))
            .map(str::to_owned)
            .unwrap_or_else(|| hcl::format::to_string(&converted).unwrap_or_default());
        Expr::from_parts(source, converted)
    }

    /// Wraps an expression built in code; its source is hcl-rs's formatting of it.
    pub fn from_expression(expr: Expression) -> Expr {
        let source = hcl::format::to_string(&expr).unwrap_or_default();
        Expr::from_parts(source, expr)
    }

    fn from_parts(source: String, expr: Expression) -> Expr {
        let eval = coerce(&expr);
        // Evaluating against an empty context succeeds exactly when nothing is referenced and no
        // function is called, which is what "literal" means to callers.
        let literal = expr.evaluate(&Context::new()).ok();
        Expr {
            source,
            expr,
            eval,
            literal,
        }
    }

    /// The expression's text as written in the file (a heredoc includes its `<<EOT` markers).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed expression.
    pub fn expression(&self) -> &Expression {
        &self.expr
    }

    /// The expression the evaluator runs.
    pub(crate) fn eval_expression(&self) -> &Expression {
        &self.eval
    }

    /// Whether the value is fixed (no references, no function calls).
    pub fn is_literal(&self) -> bool {
        self.literal.is_some()
    }

    /// The value, when [`Expr::is_literal`].
    pub fn literal(&self) -> Option<&Value> {
        self.literal.as_ref()
    }

    /// The literal value in Coder's string encoding.
    pub fn literal_string(&self) -> Option<String> {
        self.literal.as_ref().map(value_to_coder_string)
    }
}

/// Coder's string encoding of a value: strings as is, numbers as decimal text, bools as
/// `true`/`false`, null as "", lists and objects as JSON.
pub fn value_to_coder_string(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// One step after the root of a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Attr(String),
    Index,
    Splat,
}

/// A reference to a named object: `data.coder_parameter.x.value` is root `data` with steps
/// `coder_parameter`, `x`, `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub root: String,
    pub steps: Vec<Step>,
}

impl Reference {
    /// The name of the `n`th step when it is an attribute access.
    pub fn attr(&self, n: usize) -> Option<&str> {
        match self.steps.get(n) {
            Some(Step::Attr(name)) => Some(name),
            _ => None,
        }
    }

    /// The first attribute name at or after step `n`, skipping one index (`x[0].id`).
    pub fn attr_after_index(&self, n: usize) -> Option<&str> {
        match self.steps.get(n) {
            Some(Step::Attr(name)) => Some(name),
            Some(Step::Index) | Some(Step::Splat) => self.attr(n + 1),
            None => None,
        }
    }

    /// The reference as Terraform would print it, indexes as `[…]`.
    pub fn display(&self) -> String {
        let mut out = self.root.clone();
        for step in &self.steps {
            match step {
                Step::Attr(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Step::Index => out.push_str("[…]"),
                Step::Splat => out.push_str("[*]"),
            }
        }
        out
    }
}

/// References and function names found in expressions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refs {
    pub references: Vec<Reference>,
    pub functions: Vec<String>,
}

impl Refs {
    /// Collects from `expr`, with `bound` names (iterators, `count`, …) not counted as
    /// references.
    pub fn collect(&mut self, expr: &Expression, bound: &[String]) {
        let mut scope: Vec<String> = bound.to_vec();
        self.walk(expr, &mut scope);
    }

    fn walk(&mut self, expr: &Expression, scope: &mut Vec<String>) {
        match expr {
            Expression::Variable(var) => self.reference(var.as_str(), Vec::new(), scope),
            Expression::Traversal(traversal) => {
                let mut steps = Vec::new();
                for op in &traversal.operators {
                    match op {
                        TraversalOperator::GetAttr(name) => {
                            steps.push(Step::Attr(name.as_str().to_owned()))
                        }
                        TraversalOperator::Index(index) => {
                            self.walk(index, scope);
                            steps.push(Step::Index);
                        }
                        TraversalOperator::LegacyIndex(_) => steps.push(Step::Index),
                        TraversalOperator::AttrSplat | TraversalOperator::FullSplat => {
                            steps.push(Step::Splat)
                        }
                    }
                }
                match &traversal.expr {
                    Expression::Variable(var) => self.reference(var.as_str(), steps, scope),
                    other => self.walk(other, scope),
                }
            }
            Expression::Array(items) => items.iter().for_each(|item| self.walk(item, scope)),
            Expression::Object(object) => {
                for (key, value) in object.iter() {
                    if let ObjectKey::Expression(key) = key {
                        // A bare name as key is a literal key in Terraform, not a reference.
                        if !matches!(key, Expression::Variable(_)) {
                            self.walk(key, scope);
                        }
                    }
                    self.walk(value, scope);
                }
            }
            Expression::TemplateExpr(template) => self.walk_template_expr(template, scope),
            Expression::FuncCall(call) => {
                self.functions.push(func_name(&call.name));
                call.args.iter().for_each(|arg| self.walk(arg, scope));
            }
            Expression::Parenthesis(inner) => self.walk(inner, scope),
            Expression::Conditional(cond) => {
                self.walk(&cond.cond_expr, scope);
                self.walk(&cond.true_expr, scope);
                self.walk(&cond.false_expr, scope);
            }
            Expression::Operation(op) => match op.as_ref() {
                Operation::Unary(unary) => self.walk(&unary.expr, scope),
                Operation::Binary(binary) => {
                    self.walk(&binary.lhs_expr, scope);
                    self.walk(&binary.rhs_expr, scope);
                }
            },
            Expression::ForExpr(for_expr) => {
                self.walk(&for_expr.collection_expr, scope);
                let depth = scope.len();
                scope.push(for_expr.value_var.as_str().to_owned());
                if let Some(key) = &for_expr.key_var {
                    scope.push(key.as_str().to_owned());
                }
                if let Some(key_expr) = &for_expr.key_expr {
                    self.walk(key_expr, scope);
                }
                self.walk(&for_expr.value_expr, scope);
                if let Some(cond) = &for_expr.cond_expr {
                    self.walk(cond, scope);
                }
                scope.truncate(depth);
            }
            _ => {}
        }
    }

    fn walk_template_expr(&mut self, template: &TemplateExpr, scope: &mut Vec<String>) {
        // hcl-rs keeps templates as text; parse to see the interpolations. The text came out of
        // the parser, so a failure here is not expected; it would surface at evaluation.
        if let Ok(parsed) = Template::from_expr(template) {
            self.walk_template(&parsed, scope);
        }
    }

    fn walk_template(&mut self, template: &Template, scope: &mut Vec<String>) {
        for element in template.elements() {
            match element {
                Element::Literal(_) => {}
                Element::Interpolation(interp) => self.walk(&interp.expr, scope),
                Element::Directive(directive) => match directive.as_ref() {
                    Directive::If(dir) => {
                        self.walk(&dir.cond_expr, scope);
                        self.walk_template(&dir.true_template, scope);
                        if let Some(other) = &dir.false_template {
                            self.walk_template(other, scope);
                        }
                    }
                    Directive::For(dir) => {
                        self.walk(&dir.collection_expr, scope);
                        let depth = scope.len();
                        scope.push(dir.value_var.as_str().to_owned());
                        if let Some(key) = &dir.key_var {
                            scope.push(key.as_str().to_owned());
                        }
                        self.walk_template(&dir.template, scope);
                        scope.truncate(depth);
                    }
                },
            }
        }
    }

    fn reference(&mut self, root: &str, steps: Vec<Step>, scope: &[String]) {
        if scope.iter().any(|bound| bound == root) {
            return;
        }
        self.references.push(Reference {
            root: root.to_owned(),
            steps,
        });
    }
}

fn func_name(name: &FuncName) -> String {
    let mut out = String::new();
    for ns in &name.namespace {
        out.push_str(ns.as_str());
        out.push_str("::");
    }
    out.push_str(name.name.as_str());
    out
}

/// Makes Terraform's implicit conversions explicit: a condition or logical operand becomes
/// `tobool(…)` and an arithmetic or ordering operand `tonumber(…)`, so that
/// `data.coder_parameter.x.value ? 1 : 0` (the value is the string "true") evaluates as in
/// Terraform. hcl-rs itself never converts. Template interpolations are left alone.
pub(crate) fn coerce(expr: &Expression) -> Expression {
    match expr {
        Expression::Array(items) => Expression::Array(items.iter().map(coerce).collect()),
        Expression::Object(object) => Expression::Object(
            object
                .iter()
                .map(|(key, value)| {
                    let key = match key {
                        ObjectKey::Expression(k) => ObjectKey::Expression(coerce(k)),
                        other => other.clone(),
                    };
                    (key, coerce(value))
                })
                .collect(),
        ),
        Expression::Traversal(traversal) => {
            let mut traversal = traversal.as_ref().clone();
            traversal.expr = coerce(&traversal.expr);
            for op in &mut traversal.operators {
                if let TraversalOperator::Index(index) = op {
                    *index = coerce(index);
                }
            }
            Expression::Traversal(Box::new(traversal))
        }
        Expression::FuncCall(call) => {
            let mut call = call.as_ref().clone();
            call.args = call.args.iter().map(coerce).collect();
            Expression::FuncCall(Box::new(call))
        }
        Expression::Parenthesis(inner) => Expression::Parenthesis(Box::new(coerce(inner))),
        Expression::Conditional(cond) => {
            let mut cond = cond.as_ref().clone();
            cond.cond_expr = convert("tobool", coerce(&cond.cond_expr));
            cond.true_expr = coerce(&cond.true_expr);
            cond.false_expr = coerce(&cond.false_expr);
            Expression::Conditional(Box::new(cond))
        }
        Expression::Operation(op) => {
            let op = match op.as_ref() {
                Operation::Unary(unary) => {
                    let mut unary = unary.clone();
                    let func = match unary.operator {
                        UnaryOperator::Not => "tobool",
                        UnaryOperator::Neg => "tonumber",
                    };
                    unary.expr = convert(func, coerce(&unary.expr));
                    Operation::Unary(unary)
                }
                Operation::Binary(binary) => {
                    let mut binary = binary.clone();
                    let func = match binary.operator {
                        BinaryOperator::Eq | BinaryOperator::NotEq => None,
                        BinaryOperator::And | BinaryOperator::Or => Some("tobool"),
                        _ => Some("tonumber"),
                    };
                    binary.lhs_expr = coerce(&binary.lhs_expr);
                    binary.rhs_expr = coerce(&binary.rhs_expr);
                    if let Some(func) = func {
                        binary.lhs_expr = convert(func, binary.lhs_expr);
                        binary.rhs_expr = convert(func, binary.rhs_expr);
                    }
                    Operation::Binary(binary)
                }
            };
            Expression::Operation(Box::new(op))
        }
        Expression::ForExpr(for_expr) => {
            let mut for_expr = for_expr.as_ref().clone();
            for_expr.collection_expr = coerce(&for_expr.collection_expr);
            for_expr.key_expr = for_expr.key_expr.as_ref().map(coerce);
            for_expr.value_expr = coerce(&for_expr.value_expr);
            for_expr.cond_expr = for_expr
                .cond_expr
                .as_ref()
                .map(|cond| convert("tobool", coerce(cond)));
            Expression::ForExpr(Box::new(for_expr))
        }
        other => other.clone(),
    }
}

/// Wraps `expr` in a conversion call unless it already has the target type.
fn convert(func: &str, expr: Expression) -> Expression {
    let already = matches!(
        (&expr, func),
        (Expression::Bool(_), "tobool") | (Expression::Number(_), "tonumber")
    );
    if already {
        return expr;
    }
    let mut call = FuncCall::new(FuncName::new(Identifier::unchecked(func)));
    call.args.push(expr);
    Expression::FuncCall(Box::new(call))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(src: &str) -> Vec<String> {
        let expr = Expr::parse(src).unwrap();
        let mut refs = Refs::default();
        refs.collect(expr.expression(), &[]);
        refs.references.iter().map(Reference::display).collect()
    }

    #[test]
    fn finds_references_in_templates_and_skips_iterators() {
        assert_eq!(
            refs(r#""${data.coder_parameter.x.value}-%{ for s in local.l }${s}%{ endfor }""#),
            vec!["data.coder_parameter.x.value", "local.l"]
        );
        assert_eq!(
            refs("[for k, v in var.m : upper(v) if k != local.skip]"),
            vec!["var.m", "local.skip"]
        );
        assert_eq!(
            refs("{ a = local.x, (var.k) = 1 }"),
            vec!["local.x", "var.k"]
        );
        assert_eq!(
            refs("docker_container.main[0].id"),
            vec!["docker_container.main[…].id"]
        );
    }

    #[test]
    fn literal_detection() {
        assert!(Expr::parse(r#""plain $${HOME}""#).unwrap().is_literal());
        assert!(Expr::parse("[1, true, \"x\"]").unwrap().is_literal());
        assert!(!Expr::parse("local.x").unwrap().is_literal());
        assert!(!Expr::parse("lower(\"X\")").unwrap().is_literal());
        assert_eq!(
            Expr::parse("[\"a\", \"b\"]")
                .unwrap()
                .literal_string()
                .unwrap(),
            r#"["a","b"]"#
        );
        assert_eq!(Expr::parse("3").unwrap().literal_string().unwrap(), "3");
        assert_eq!(Expr::parse("1.5").unwrap().literal_string().unwrap(), "1.5");
    }
}
