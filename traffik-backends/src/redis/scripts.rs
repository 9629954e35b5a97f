//! The strategy scripts, one per file in `scripts/`, registered by the
//! build script: `scripts/<name>.lua` is the script of the strategy whose
//! [`StrategyKind::as_str`] is `<name>`.
//!
//! A strategy without a script does not compile: [`ScriptOf`] looks each
//! strategy's script up in a `const` block, which the strategy table's
//! visitor instantiates for every strategy.

use redis::Script;
use traffik_core::{AnyStrategy, Decision, Error, Strategy, StrategyKind, Visitor};

use super::error::bad_reply;

include!(concat!(env!("OUT_DIR"), "/redis_scripts.rs"));

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The position in [`SCRIPTS`] of the script named `name`.
const fn position(name: &str) -> Option<usize> {
    let mut i = 0;
    while i < SCRIPTS.len() {
        if same(SCRIPTS[i].0, name) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The position of a strategy's script, found at compile time.
struct ScriptOf;

impl Visitor for ScriptOf {
    type Output = usize;

    #[inline]
    fn visit<S: Strategy>(self, _: &S) -> usize {
        const {
            match position(S::KIND.as_str()) {
                Some(at) => at,
                None => panic!(
                    "a strategy of the table has no script: add \
                     traffik-backends/src/redis/scripts/<its name>.lua"
                ),
            }
        }
    }
}

/// The position of a strategy's refund script, found at compile time.
struct RefundOf;

/// The position in [`REFUNDS`] of the refund script named `name`.
const fn refund_position(name: &str) -> Option<usize> {
    let mut i = 0;
    while i < REFUNDS.len() {
        if same(REFUNDS[i].0, name) {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl Visitor for RefundOf {
    type Output = usize;

    #[inline]
    fn visit<S: Strategy>(self, _: &S) -> usize {
        const {
            match refund_position(S::KIND.as_str()) {
                Some(at) => at,
                None => panic!(
                    "a strategy of the table has no refund script: add \
                     traffik-backends/src/redis/scripts/refund/<its name>.lua"
                ),
            }
        }
    }
}

/// The Lua source of a strategy's refund script, as sent to Redis.
pub fn refund_source(kind: StrategyKind) -> &'static str {
    REFUNDS[AnyStrategy::from(kind).visit(RefundOf)].2
}

/// The Lua source of a strategy's script, exactly as sent to Redis (its
/// arguments and reply are described at the top of the source), for audits
/// and for benchmarks that run the same script.
pub fn source(kind: StrategyKind) -> &'static str {
    SCRIPTS[AnyStrategy::from(kind).visit(ScriptOf)].2
}

/// The Lua source of the group script, which decides every limit of one
/// request in one call (its arguments and reply are described in the
/// source), for audits and benchmarks.
pub fn group_source() -> &'static str {
    GROUP
}

/// Every script, each knowing its SHA1 for `EVALSHA`.
pub(super) struct Scripts {
    all: Vec<Script>,
    refunds: Vec<Script>,
    group: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            all: SCRIPTS
                .iter()
                .map(|(_, _, source)| Script::new(source))
                .collect(),
            refunds: REFUNDS
                .iter()
                .map(|(_, _, source)| Script::new(source))
                .collect(),
            group: Script::new(GROUP),
        }
    }

    /// The group script.
    pub(super) fn group(&self) -> &Script {
        &self.group
    }

    /// A strategy's position in the group script's table (from 1).
    #[inline]
    pub(super) fn group_position(strategy: &AnyStrategy) -> usize {
        strategy.visit(ScriptOf) + 1
    }

    /// The script of a strategy.
    #[inline]
    pub(super) fn of(&self, strategy: &AnyStrategy) -> &Script {
        &self.all[strategy.visit(ScriptOf)]
    }

    /// The refund script of a strategy (it takes the keys its decision
    /// script takes).
    #[inline]
    pub(super) fn refund_of(&self, strategy: &AnyStrategy) -> &Script {
        &self.refunds[strategy.visit(RefundOf)]
    }

    /// How many Redis keys a strategy's script takes.
    #[inline]
    pub(super) fn keys(strategy: &AnyStrategy) -> usize {
        SCRIPTS[strategy.visit(ScriptOf)].1
    }

    pub(super) fn all(&self) -> &[Script] {
        &self.all
    }
}

/// Turns a script's reply `{allowed, reason, limit, remaining, retry, reset}`
/// into a [`Decision`].
pub(super) fn decision(reply: &[i64]) -> Result<Decision, Error> {
    let &[allowed, reason, limit, remaining, retry, reset] = reply else {
        return Err(bad_reply(reply));
    };
    let number = |n: i64| u64::try_from(n).map_err(|_| bad_reply(reply));
    let (limit, remaining, reset) = (number(limit)?, number(remaining)?, number(reset)?);
    match (allowed, reason) {
        (1, 0) => Ok(Decision::allowed(limit, remaining, reset)),
        (0, 1) => Ok(Decision::denied(limit, remaining, number(retry)?, reset)),
        (0, 2) => Ok(Decision::cost_exceeds_capacity(limit, remaining, reset)),
        _ => Err(bad_reply(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_has_its_script_and_every_script_a_strategy() {
        for kind in StrategyKind::ALL {
            let source = source(kind);
            assert!(source.starts_with("-- traffik"), "{kind}: prelude first");
            assert!(source.contains(&format!("({}", kind_title(kind))), "{kind}");
        }
        for kind in StrategyKind::ALL {
            let source = refund_source(kind);
            assert!(
                source.contains(&format!("refund ({}", kind_title(kind))),
                "{kind}"
            );
        }
        for (name, keys, _) in REFUNDS {
            let kind = StrategyKind::ALL.iter().find(|k| k.as_str() == *name);
            let kind = kind.unwrap_or_else(|| panic!("refund/{name}.lua names no strategy"));
            assert_eq!(
                *keys,
                SCRIPTS[AnyStrategy::from(*kind).visit(ScriptOf)].1,
                "{name}"
            );
        }
        for (name, _, _) in SCRIPTS {
            assert!(
                StrategyKind::ALL.iter().any(|k| k.as_str() == *name),
                "the script {name}.lua names no strategy"
            );
        }
    }

    /// The file's own first line names the Rust file it mirrors.
    fn kind_title(kind: StrategyKind) -> String {
        format!("traffik-core's {}.rs", kind.as_str())
    }
}
