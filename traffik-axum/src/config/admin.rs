//! An operator's hand on the throttles of a rules file: what a client has
//! left, and reset, block, unblock, on the keys the layer itself uses.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use traffik_backends::AnyBackend;
use traffik_core::{
    Backend, Clock, ConfigError, Error, ErrorKind, Key, Limit, Penalty, Rate, SystemClock, Throttle,
};

use super::compile::{Built, RulesClock, shown};
use super::identity::{ConfigIdentity, Source};
use super::spec::ScopeSpec;
use crate::Identity;
use crate::rule::{Key as LayerKey, Suffix};

/// A rule's limits by identity text (API tiers).
pub(crate) type Tiers = Arc<HashMap<Arc<str>, Limit>>;

/// One rule's use of a throttle: what its keys are made of, and whom.
#[derive(Clone)]
pub(crate) struct Use {
    pub(crate) scope: ScopeSpec,
    pub(crate) identity: ConfigIdentity,
    pub(crate) tiers: Option<Tiers>,
}

/// A throttle of a rules file, for an operator: see
/// [`Rules::admin`](super::Rules::admin).
///
/// A client is named as the rules identify it (an IP address, or an API
/// key's value for `source = "header"`), and the key is built exactly as
/// the layer builds it: the identity, then the route template (and the
/// method) for a rule keyed per route.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use traffik_axum::config::{Client, Rules};
///
/// let rules = Rules::from_toml(
///     r#"
///     [throttles.login]
///     rate = "5/15min"
///     penalty = { steps = ["1m", "1h"] }
///
///     [[rules]]
///     throttle = "login"
///     paths = ["/login"]
///     "#,
///     "rules.toml",
/// )
/// .await?;
/// let login = rules.admin("login")?;
/// let alice = login.key(&Client::ip("203.0.113.7".parse()?).route("/login"))?;
/// login.block(&alice, Duration::from_secs(3600)).await?;
/// assert!(login.peek(&alice).await?.blocked_for.is_some());
/// login.unblock(&alice).await?;
/// assert_eq!(login.peek(&alice).await?.remaining, 5);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ThrottleAdmin {
    name: Arc<str>,
    built: Built,
    uses: Arc<[Use]>,
    /// The identity of a throttle no rule names; `None` for a throttle of
    /// code ([`for_code`](ThrottleAdmin::for_code)), keyed as given.
    fallback: Option<ConfigIdentity>,
}

impl fmt::Debug for ThrottleAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleAdmin")
            .field("name", &self.name)
            .field("rate", self.limit().rate())
            .field("rules", &self.uses.len())
            .finish_non_exhaustive()
    }
}

/// A client, as an operator names it.
#[derive(Clone, Debug)]
pub struct Client<'a> {
    who: Who<'a>,
    route: Option<&'a str>,
    method: Option<&'a str>,
}

#[derive(Clone, Copy, Debug)]
enum Who<'a> {
    /// As the rules identify clients: an IP address, or a header's value.
    As(&'a str),
    /// By IP address, also where the rules read a header (a client that
    /// sends none is its address).
    Ip(IpAddr),
}

impl<'a> Client<'a> {
    /// A client named as the rules identify clients: an IP address for an
    /// IP source, the header's value for `source = "header"`.
    pub fn named(text: &'a str) -> Client<'a> {
        Client {
            who: Who::As(text),
            route: None,
            method: None,
        }
    }

    /// A client by IP address, also where the rules read a header (the
    /// key of a request that sent none).
    pub fn ip(ip: IpAddr) -> Client<'a> {
        Client {
            who: Who::Ip(ip),
            route: None,
            method: None,
        }
    }

    /// The route template (axum's, such as `/items/{id}`), for a throttle
    /// keyed per route.
    #[must_use]
    pub fn route(mut self, route: &'a str) -> Client<'a> {
        self.route = Some(route);
        self
    }

    /// The method, for a throttle keyed per method and route.
    #[must_use]
    pub fn method(mut self, method: &'a str) -> Client<'a> {
        self.method = Some(method);
        self
    }
}

/// A client's key in one throttle, as the layer builds it.
#[derive(Clone, Debug)]
pub struct AdminKey {
    text: String,
    tag: usize,
    limit: Limit,
}

impl AdminKey {
    /// The identity part of the store's key (what follows the throttle's
    /// namespace and name).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The limit the client is under (its tier's, where the rule has
    /// limits by identity).
    pub fn limit(&self) -> &Limit {
        &self.limit
    }
}

/// What a client has, read without charging it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The limit's capacity.
    pub limit: u64,
    /// What a hit would still admit.
    pub remaining: u64,
    /// How long until a hit of 1 would pass (zero when one would now).
    pub retry_after: Duration,
    /// How long until the key is as good as new.
    pub reset_after: Duration,
    /// How long the client stays blocked by the throttle's penalty
    /// (`None`: not blocked, or the throttle has no penalty).
    pub blocked_for: Option<Duration>,
    /// Its offences not yet forgiven (`None`: the throttle has no penalty).
    pub offences: Option<u64>,
}

fn config(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

impl ThrottleAdmin {
    pub(crate) fn new(
        name: &str,
        built: Built,
        uses: Vec<Use>,
        fallback: &ConfigIdentity,
    ) -> ThrottleAdmin {
        ThrottleAdmin {
            name: name.into(),
            built,
            uses: uses.into(),
            fallback: Some(fallback.clone()),
        }
    }

    /// A handle on a throttle your code defines rather than a rules file:
    /// its keys are identities as the code passes them
    /// ([`key_as_given`](ThrottleAdmin::key_as_given)), and its blocks are
    /// those any [`Lockout`](traffik_core::Lockout) of it checks.
    ///
    /// # Errors
    ///
    /// When the throttle's scope cannot take a penalty's keys (never for a
    /// throttle that was built).
    pub fn for_code(throttle: &Throttle<AnyBackend>) -> Result<ThrottleAdmin, ConfigError> {
        let limit = throttle.limit();
        // Blocks live beside the throttle's keys whatever the penalty's
        // steps: any penalty reads and writes them.
        let lockout = Throttle::builder(throttle.name(), *limit.rate())
            .strategy(limit.strategy().clone())
            .namespace(throttle.namespace())
            .clock(RulesClock::System(SystemClock))
            .build(throttle.backend().clone())?
            .penalized(Penalty::fixed(Duration::from_secs(60))?)?;
        Ok(ThrottleAdmin {
            name: throttle.name().into(),
            built: Built::Penalized(lockout),
            uses: Arc::new([]),
            fallback: None,
        })
    }

    /// The key of `identity` as code passes it to
    /// [`Throttle::hit`](traffik_core::Throttle::hit): the identity alone,
    /// under the throttle's own limit.
    pub fn key_as_given(&self, identity: &str) -> AdminKey {
        AdminKey {
            text: identity.to_owned(),
            tag: identity.len(),
            limit: self.limit().clone(),
        }
    }

    /// The throttle's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The throttle's limit.
    pub fn limit(&self) -> &Limit {
        match &self.built {
            Built::Plain(throttle) => throttle.limit(),
            Built::Penalized(lockout) => lockout.throttle().limit(),
        }
    }

    /// Its rate.
    pub fn rate(&self) -> Rate {
        *self.limit().rate()
    }

    /// Whether it blocks clients that breach it (it has a penalty), so that
    /// [`block`](ThrottleAdmin::block) applies.
    pub fn has_penalty(&self) -> bool {
        matches!(self.built, Built::Penalized(_))
    }

    /// The key of `client`, as the first rule naming this throttle builds
    /// it (the rule with a route scope when a route is given).
    ///
    /// # Errors
    ///
    /// A [`Config`](ErrorKind::Config) error when the client cannot be
    /// this throttle's (or the throttle is code's: see
    /// [`key_as_given`](ThrottleAdmin::key_as_given)): not an IP address where the rules identify clients
    /// by address, no route for a throttle keyed per route (or a route for
    /// one keyed by the client alone), no method for one keyed per method.
    pub fn key(&self, client: &Client<'_>) -> Result<AdminKey, Error> {
        let routed = |u: &&Use| u.scope != ScopeSpec::Global;
        let chosen = match client.route {
            Some(_) => self.uses.iter().find(routed),
            None => self.uses.iter().find(|u| u.scope == ScopeSpec::Global),
        }
        .or_else(|| self.uses.first());
        let (scope, identity, tiers) = match (chosen, &self.fallback) {
            (Some(u), _) => (u.scope, &u.identity, u.tiers.as_ref()),
            // Named by no rule: keyed by the identity alone.
            (None, Some(fallback)) => (ScopeSpec::Global, fallback, None),
            (None, None) => {
                return Err(config(format!(
                    "throttle {} is your code's: its keys are identities as given \
                     (key_as_given)",
                    shown(&self.name)
                )));
            }
        };
        let identity = identify(&self.name, identity, client.who)?;
        let key = match (scope, client.route, client.method) {
            (ScopeSpec::Global, None, _) => LayerKey::of(&identity),
            (ScopeSpec::Global, Some(_), _) => {
                return Err(config(format!(
                    "throttle {} is keyed by the client alone: give no route",
                    shown(&self.name)
                )));
            }
            (_, None, _) => {
                return Err(config(format!(
                    "throttle {} is keyed per route: give the route template, such as /login",
                    shown(&self.name)
                )));
            }
            (ScopeSpec::Route, Some(route), _) => LayerKey::scoped(&identity, Suffix::Route(route)),
            (ScopeSpec::MethodRoute, Some(_), None) => {
                return Err(config(format!(
                    "throttle {} is keyed per method and route: give the method too",
                    shown(&self.name)
                )));
            }
            (ScopeSpec::MethodRoute, Some(route), Some(method)) => LayerKey::scoped(
                &identity,
                Suffix::MethodRoute(&method.to_ascii_uppercase(), route),
            ),
        };
        let tier = tiers.and_then(|tiers| {
            let text = identity
                .text()
                .map_or_else(|| identity.to_string(), str::to_owned);
            tiers.get(text.as_str()).cloned()
        });
        Ok(AdminKey {
            text: key.as_str().to_owned(),
            tag: key.tag(),
            limit: tier.unwrap_or_else(|| self.limit().clone()),
        })
    }

    /// What `key` has left, without charging it; its block and offences
    /// where the throttle has a penalty.
    ///
    /// # Errors
    ///
    /// When the store fails: an operator's read takes no failure policy.
    pub async fn peek(&self, key: &AdminKey) -> Result<Status, Error> {
        let (decision, blocked_for, offences) = match &self.built {
            Built::Plain(throttle) => (peek(throttle, key).await?, None, None),
            Built::Penalized(lockout) => {
                let decision = peek(lockout.throttle(), key).await?;
                let blocked = lockout.block_left_tagged(&key.text, key.tag).await?;
                let offences = lockout.offences_tagged(&key.text, key.tag).await?;
                (decision, blocked, Some(offences))
            }
        };
        let (now, next) = decision;
        Ok(Status {
            limit: now.limit(),
            remaining: now.remaining(),
            retry_after: Duration::from_millis(next.retry_after_ms()),
            reset_after: Duration::from_millis(now.reset_after_ms()),
            blocked_for,
            offences,
        })
    }

    /// Gives `key` its whole budget back (its block and offences stay:
    /// see [`unblock`](ThrottleAdmin::unblock)).
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn reset(&self, key: &AdminKey) -> Result<(), Error> {
        let throttle = match &self.built {
            Built::Plain(throttle) => throttle,
            Built::Penalized(lockout) => lockout.throttle(),
        };
        let now = throttle.clock().now_ms();
        throttle
            .backend()
            .reset(
                Key::with_tag(throttle.scope(), &key.text, key.tag),
                &key.limit,
                now,
            )
            .await
    }

    /// Blocks `key` for `duration` from now: its requests are denied with
    /// the block's time left as their `Retry-After`. Replaces a block in
    /// place.
    ///
    /// # Errors
    ///
    /// A [`Config`](ErrorKind::Config) error when the throttle has no
    /// penalty (blocks are checked by throttles with one) or the duration
    /// is out of range; otherwise when the store fails.
    pub async fn block(&self, key: &AdminKey, duration: Duration) -> Result<(), Error> {
        self.lockout()?
            .block_tagged(&key.text, key.tag, duration)
            .await
    }

    /// Lifts `key`'s block and forgets its offences.
    ///
    /// # Errors
    ///
    /// As [`block`](ThrottleAdmin::block).
    pub async fn unblock(&self, key: &AdminKey) -> Result<(), Error> {
        self.lockout()?.unblock_tagged(&key.text, key.tag).await
    }

    fn lockout(
        &self,
    ) -> Result<
        &traffik_core::Lockout<traffik_backends::AnyBackend, super::compile::RulesClock>,
        Error,
    > {
        match &self.built {
            Built::Penalized(lockout) => Ok(lockout),
            Built::Plain(_) => Err(config(format!(
                "throttle {} has no penalty, so nothing checks blocks of its keys: give it one \
                 (penalty = {{ steps = [\"1h\"] }}) to block clients by hand",
                shown(&self.name)
            ))),
        }
    }
}

/// What `key` has now (a peek of 0), and what a hit of 1 would get.
async fn peek<B: Backend, C: Clock>(
    throttle: &Throttle<B, C>,
    key: &AdminKey,
) -> Result<(traffik_core::Decision, traffik_core::Decision), Error> {
    let now = throttle.clock().now_ms();
    let at = |cost| {
        throttle.backend().peek(
            Key::with_tag(throttle.scope(), &key.text, key.tag),
            &key.limit,
            now,
            cost,
        )
    };
    let held = at(0).await?;
    let next = at(1).await?;
    Ok((held, next))
}

/// The identity the rules give `who`.
fn identify(throttle: &str, identity: &ConfigIdentity, who: Who<'_>) -> Result<Identity, Error> {
    let by_ip = |text: &str, prefix: u8| {
        text.trim()
            .parse::<IpAddr>()
            .map(|ip| Identity::ip(ip, prefix))
            .map_err(|_| {
                config(format!(
                    "throttle {} identifies clients by IP address, and {} is not one",
                    shown(throttle),
                    shown(text)
                ))
            })
    };
    match (&identity.source, who) {
        (Source::Peer(peer), Who::As(text)) => by_ip(text, peer.prefix()),
        (Source::Client(client), Who::As(text)) => by_ip(text, client.prefix()),
        (Source::Peer(peer), Who::Ip(ip)) => Ok(Identity::ip(ip, peer.prefix())),
        (Source::Client(client), Who::Ip(ip)) => Ok(Identity::ip(ip, client.prefix())),
        (Source::Header(header), Who::Ip(ip)) => Ok(Identity::ip(ip, header.fallback().prefix())),
        (Source::Header(header), Who::As(text)) => {
            let value = text.trim();
            if value.is_empty() {
                return Err(config(format!(
                    "throttle {} identifies clients by the header {}: name its value",
                    shown(throttle),
                    header.header_name()
                )));
            }
            Ok(Identity::Header(header.header_name().clone(), value.into()))
        }
    }
}
