//! The controller's token in a Secret: the controller creates it on first start, agents mount
//! it, and `kubectl outflow` reads it with the user's own credentials.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// The key of the token in the Secret's data.
pub const TOKEN_KEY: &str = "token";

/// Why the token Secret could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The API refused or failed.
    #[error("secret {namespace}/{name}: the Kubernetes API refused or failed")]
    Api {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The Secret exists but holds no usable token.
    #[error("secret {namespace}/{name} has no `{TOKEN_KEY}` key holding one line of text: delete it and the controller makes a new one")]
    Unusable {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// No randomness to make a token from.
    #[error("cannot read /dev/urandom to make a token")]
    Random(#[source] std::io::Error),
    /// No Kubernetes API to ask for the Secret.
    #[error("cannot reach the Kubernetes API for the token Secret")]
    Access(#[source] crate::AccessError),
}

impl TokenError {
    fn api(namespace: &str, name: &str) -> impl FnOnce(kube::Error) -> TokenError {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        move |source| TokenError::Api {
            namespace,
            name,
            source,
        }
    }

    fn unusable(namespace: &str, name: &str) -> TokenError {
        TokenError::Unusable {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// The token in `namespace/name`, or None when there is no such Secret.
pub async fn read_token(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, TokenError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(TokenError::api(namespace, name))?;
    let Some(secret) = secret else {
        return Ok(None);
    };
    let token = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control()));
    token
        .map(Some)
        .ok_or_else(|| TokenError::unusable(namespace, name))
}

/// The token in `namespace/name`, creating the Secret with a new random token when it is
/// missing. Two controllers starting at once agree: the second's create fails with 409 and it
/// reads the first's.
pub async fn ensure_token(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<String, TokenError> {
    if let Some(t) = read_token(client, namespace, name).await? {
        return Ok(t);
    }
    let token = random_token().map_err(TokenError::Random)?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "outflow".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.clone().into_bytes()),
        )])),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(token),
        Err(kube::Error::Api(s)) if s.code == 409 => read_token(client, namespace, name)
            .await?
            .ok_or_else(|| TokenError::unusable(namespace, name)),
        Err(e) => Err(TokenError::api(namespace, name)(e)),
    }
}

/// 32 random bytes as hex: a bearer token that fits any header.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// [`ensure_token`] for a caller without a runtime (the controller at start): connects as
/// kubectl would, in `namespace` or else the client's own (the pod's service account's, or the
/// kubeconfig context's). Returns the namespace and the token.
pub fn ensure_token_blocking(
    access: &crate::ClusterAccess,
    namespace: Option<&str>,
    name: &str,
) -> Result<(String, String), TokenError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TokenError::Access(crate::AccessError::Runtime(e)))?;
    runtime.block_on(async {
        let client = crate::client(access).await.map_err(TokenError::Access)?;
        let ns = namespace
            .map(String::from)
            .unwrap_or_else(|| client.default_namespace().to_string());
        let token = ensure_token(&client, &ns, name).await?;
        Ok((ns, token))
    })
}
