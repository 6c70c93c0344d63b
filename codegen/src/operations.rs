//! Emits `rust/operations.rs`, the HTTP operation layer included by the server's `api` module: for every
//! operation of `spec/openapi.yaml`, a trait with one function (what the operation does, implemented by hand
//! on `super::Handlers`) and, per tag, a poem-openapi service whose endpoints carry the spec's path, method,
//! operation id, tag, security and parameters and call that function. An operation of the spec that the
//! server does not implement fails to compile; its response type is the generated enum of its statuses.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::error::SpecError;
use crate::model::{Scalar, Ty};
use crate::names;
use crate::openapi::{OpenApi, Operation, Parameter};
use crate::rust::HEADER;

/// The Rust type a parameter's handler receives, and the extractor the endpoint reads it with. Path
/// parameters are strings; query parameters are optional and kept as sent when they are typed
/// (`params::Raw<T>`: the document shows `T`, the handler parses leniently and answers the spec's 400).
fn parameter_types(p: &Parameter) -> (TokenStream, TokenStream) {
    if p.location == "path" {
        return (quote!(String), quote!(poem_openapi::param::Path<String>));
    }
    let value = match (&p.prop.ty, p.prop.format.as_deref()) {
        (Ty::Scalar(Scalar::String), Some("date-time")) => {
            quote!(super::params::Raw<time::OffsetDateTime>)
        }
        (Ty::Scalar(Scalar::String), _) => quote!(String),
        (Ty::Scalar(Scalar::I32 | Scalar::I64), _) => quote!(super::params::Raw<i64>),
        (Ty::Scalar(Scalar::F64), _) => quote!(super::params::Raw<f64>),
        (Ty::Scalar(Scalar::Bool), _) => quote!(super::params::Raw<bool>),
        _ => quote!(String),
    };
    if p.required {
        (value.clone(), quote!(poem_openapi::param::Query<#value>))
    } else {
        (
            quote!(Option<#value>),
            quote!(poem_openapi::param::Query<Option<#value>>),
        )
    }
}

/// The path in poem's syntax (`/sessions/:sessionId`).
fn poem_path(path: &str) -> String {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The operation's documentation: its summary, then its description.
fn op_docs(op: &Operation) -> TokenStream {
    let mut lines: Vec<String> = Vec::new();
    if let Some(summary) = op.summary.as_deref() {
        lines.push(format!(" {}", summary.trim()));
    }
    if let Some(description) = op.description.as_deref().filter(|d| !d.trim().is_empty()) {
        lines.push(String::new());
        lines.extend(description.trim().lines().map(|l| {
            let l = l.trim_end();
            if l.is_empty() {
                String::new()
            } else {
                format!(" {l}")
            }
        }));
    }
    quote! { #( #[doc = #lines] )* }
}

/// The trait of one operation and the endpoint that calls it.
fn operation(op: &Operation) -> (TokenStream, TokenStream) {
    let trait_ident = format_ident!("{}", names::pascal(&op.id));
    let fn_ident = format_ident!("{}", names::snake(&op.id));
    let response = format_ident!("{}Response", names::pascal(&op.id));
    let secured = !op.security.is_empty();
    let params: Vec<(proc_macro2::Ident, &Parameter)> = op
        .parameters
        .iter()
        .map(|p| (format_ident!("{}", names::snake(&p.name)), p))
        .collect();
    let handler_params = params.iter().map(|(ident, p)| {
        let (ty, _) = parameter_types(p);
        quote!(#ident: #ty)
    });
    let endpoint_params = params.iter().map(|(ident, p)| {
        let (_, extractor) = parameter_types(p);
        let name = &p.name;
        quote!(#[oai(name = #name)] #ident: #extractor)
    });
    let args = params.iter().map(|(ident, _)| quote!(#ident.0));
    let (auth_param, auth_arg, auth_endpoint) = if secured {
        (
            quote!(auth: super::auth::BearerAuth,),
            quote!(auth,),
            quote!(auth: super::auth::BearerAuth,),
        )
    } else {
        (TokenStream::new(), TokenStream::new(), TokenStream::new())
    };
    let doc = op_docs(op);
    let trait_doc = format!(
        " `{}` (`{} {}`): what the operation does, implemented on `super::Handlers`.",
        op.id, op.method, op.path
    );
    let path = poem_path(&op.path);
    let method = op.method.to_lowercase();
    let op_id = &op.id;
    let tag = op
        .tags
        .first()
        .map(|t| format!("ApiTags::{}", names::pascal(t)));
    let tag = tag.map_or_else(TokenStream::new, |t| quote!(, tag = #t));
    let trait_item = quote! {
        #[doc = #trait_doc]
        pub trait #trait_ident {
            #doc
            fn #fn_ident(
                req: &poem::Request,
                state: &std::sync::Arc<crate::state::AppState>,
                #auth_param
                #( #handler_params ),*
            ) -> impl std::future::Future<Output = crate::protocol::http::#response> + Send;
        }
    };
    let endpoint = quote! {
        #doc
        #[oai(path = #path, method = #method, operation_id = #op_id #tag)]
        async fn #fn_ident(
            &self,
            req: &poem::Request,
            #auth_endpoint
            poem::web::Data(state): poem::web::Data<&std::sync::Arc<crate::state::AppState>>,
            #( #endpoint_params ),*
        ) -> crate::protocol::http::#response {
            <super::Handlers as #trait_ident>::#fn_ident(req, state, #auth_arg #( #args ),*).await
        }
    };
    (trait_item, endpoint)
}

/// The operation layer's source, formatted.
pub(crate) fn emit(http: &OpenApi) -> Result<String, SpecError> {
    let operations: Vec<&Operation> = http.operations.iter().filter(|op| !op.upgrade).collect();
    let mut tags: Vec<String> = Vec::new();
    for op in &operations {
        let tag = op.tags.first().cloned().unwrap_or_default();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let mut traits = Vec::new();
    let mut services = Vec::new();
    let mut service_idents = Vec::new();
    for tag in &tags {
        let ident = format_ident!(
            "{}Api",
            names::pascal(if tag.is_empty() { "untagged" } else { tag })
        );
        let doc = format!(" The operations tagged `{tag}`.");
        let endpoints: Vec<TokenStream> = operations
            .iter()
            .filter(|op| op.tags.first().map_or("", String::as_str) == tag)
            .map(|op| {
                let (trait_item, endpoint) = operation(op);
                traits.push(trait_item);
                endpoint
            })
            .collect();
        services.push(quote! {
            #[doc = #doc]
            pub struct #ident;

            #[poem_openapi::OpenApi]
            impl #ident {
                #( #endpoints )*
            }
        });
        service_idents.push(ident);
    }
    let tag_variants = tags.iter().filter(|t| !t.is_empty()).map(|tag| {
        let variant = format_ident!("{}", names::pascal(tag));
        let description = http
            .tags
            .iter()
            .find(|(name, _)| name == tag)
            .and_then(|(_, d)| d.as_deref())
            .map(|d| format!(" {}", d.trim()));
        let doc = description.map_or_else(TokenStream::new, |d| quote!(#[doc = #d]));
        quote! {
            #doc
            #[oai(rename = #tag)]
            #variant,
        }
    });
    let tokens = quote! {
        /// The operation groups (`tags`) of the spec that operations use.
        #[derive(poem_openapi::Tags)]
        pub enum ApiTags {
            #( #tag_variants )*
        }

        /// Every operation of the spec, as the services poem-openapi serves.
        pub type Apis = ( #( #service_idents, )* );

        /// The services of [`Apis`].
        pub fn apis() -> Apis {
            ( #( #service_idents, )* )
        }

        #( #traits )*
        #( #services )*
    };
    let file: syn::File = syn::parse2(tokens).map_err(|e| SpecError::Invalid {
        file: "codegen".to_owned(),
        pointer: String::new(),
        message: format!("internal error: generated operations do not parse: {e}"),
    })?;
    Ok(format!("{HEADER}\n{}", prettyplease::unparse(&file)))
}
