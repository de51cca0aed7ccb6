//! `lazona-lambda`: the webhook endpoints as an AWS Lambda function behind an API Gateway HTTP
//! API. The connector is built once per cold start; every invocation is answered by
//! [`app_lambda::handle`]. The worker runs elsewhere (`lazona-worker` on the same database).

use lambda_http::service_fn;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let connector = app_lambda::connector_from_env().await?;
    lambda_http::run(service_fn(|request| {
        app_lambda::handle(&connector, request)
    }))
    .await
}
