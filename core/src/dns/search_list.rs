//! The names an application may have asked for, given a name its resolver queried.
//!
//! A Kubernetes pod's resolv.conf searches `NS.svc.DOMAIN`, `svc.DOMAIN`, `DOMAIN` and the node's
//! own domains (on Azure, `xxxx.yy.internal.cloudapp.net`) with `ndots:5`. A queried name is either
//! what the application asked for, or that name plus one of these suffixes. The candidates of each
//! query in a run are intersected to find the one name they all expand.

/// Candidate names, kept inline: computed for every DNS query.
pub type Candidates<'q> = arrayvec::ArrayVec<&'q str, 8>;

/// Knows the search suffixes of the cluster.
#[derive(Debug, Clone)]
pub struct SearchList {
    /// `.svc.DOMAIN`
    svc_suffix: String,
    /// `.DOMAIN`
    domain_suffix: String,
    /// Extra suffixes, each with a leading dot.
    extra: Vec<String>,
}

/// The Azure VNet DNS suffix; the two labels before it vary per VNet.
const AZURE_INTERNAL: &str = ".internal.cloudapp.net";

impl SearchList {
    /// The search list of a cluster with this domain and extra search domains.
    pub fn new(cluster_domain: &str, extra: &[String]) -> SearchList {
        let domain = cluster_domain.trim_matches('.').to_ascii_lowercase();
        SearchList {
            svc_suffix: format!(".svc.{domain}"),
            domain_suffix: format!(".{domain}"),
            extra: extra
                .iter()
                .map(|s| format!(".{}", s.trim_matches('.').to_ascii_lowercase()))
                .collect(),
        }
    }

    /// The names the application may have asked for when the resolver queried `qname`,
    /// `qname` itself first.
    pub fn candidates<'q>(&self, qname: &'q str) -> Candidates<'q> {
        let mut out = Candidates::new();
        out.push(qname);
        let mut add = |base: &'q str| {
            if !base.is_empty() && !out.contains(&base) {
                // More search domains than fit are not considered.
                let _ = out.try_push(base);
            }
        };
        if let Some(before_svc) = qname.strip_suffix(&self.svc_suffix) {
            // NAME.NS.svc.DOMAIN → NAME (the pod's namespace suffix)
            if let Some((name, _ns)) = before_svc.rsplit_once('.') {
                add(name);
            }
            add(before_svc);
        }
        if let Some(base) = qname.strip_suffix(&self.domain_suffix) {
            add(base);
        }
        for suffix in &self.extra {
            if let Some(base) = qname.strip_suffix(suffix.as_str()) {
                add(base);
            }
        }
        if let Some(before) = qname.strip_suffix(AZURE_INTERNAL) {
            // NAME.<vnet-id>.<region-code>.internal.cloudapp.net → NAME
            let mut parts = before.rsplitn(3, '.');
            let (_region, _vnet, name) = (parts.next(), parts.next(), parts.next());
            if let Some(name) = name {
                add(name);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> SearchList {
        SearchList::new("cluster.local", &[])
    }

    #[test]
    fn namespace_expansion_yields_the_short_name() {
        let c = list().candidates("api.example.com.default.svc.cluster.local");
        assert!(c.contains(&"api.example.com"), "{c:?}");
    }

    #[test]
    fn expansions_of_one_name_share_exactly_that_candidate() {
        let l = list();
        let names = [
            "api.example.com.default.svc.cluster.local",
            "api.example.com.svc.cluster.local",
            "api.example.com.cluster.local",
            "api.example.com",
        ];
        let mut common = l.candidates(names[0]).to_vec();
        for n in &names[1..] {
            let c = l.candidates(n);
            common.retain(|x| c.contains(x));
        }
        assert_eq!(common, vec!["api.example.com"]);
    }

    #[test]
    fn azure_vnet_suffix_is_stripped() {
        let c = list().candidates("db.abcd1234.bx.internal.cloudapp.net");
        assert!(c.contains(&"db"), "{c:?}");
    }
}
