# Secrets the tasks read at start (ECS injects them as environment variables).

resource "aws_secretsmanager_secret" "redis_password" {
  name_prefix = "${local.name}-redis-password-"
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "redis_password" {
  secret_id     = aws_secretsmanager_secret.redis_password.id
  secret_string = var.redis_auth_token
}

resource "aws_secretsmanager_secret" "kafka_sasl_password" {
  name_prefix = "${local.name}-kafka-sasl-password-"
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "kafka_sasl_password" {
  secret_id     = aws_secretsmanager_secret.kafka_sasl_password.id
  secret_string = var.kafka_sasl_password
}

resource "aws_secretsmanager_secret" "internal_token" {
  count       = local.has_internal_token ? 1 : 0
  name_prefix = "${local.name}-internal-token-"
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "internal_token" {
  count         = local.has_internal_token ? 1 : 0
  secret_id     = aws_secretsmanager_secret.internal_token[0].id
  secret_string = var.internal_token
}

resource "aws_secretsmanager_secret" "meter_api_key" {
  count       = local.has_meter_api_key ? 1 : 0
  name_prefix = "${local.name}-meter-api-key-"
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "meter_api_key" {
  count         = local.has_meter_api_key ? 1 : 0
  secret_id     = aws_secretsmanager_secret.meter_api_key[0].id
  secret_string = var.meter_api_key
}

locals {
  # whether a secret is set is not itself secret (count cannot use sensitive values)
  has_internal_token = nonsensitive(var.internal_token != "")
  has_meter_api_key  = var.run_meter && nonsensitive(var.meter_api_key != "")
  secret_arns = concat(
    [aws_secretsmanager_secret.redis_password.arn, aws_secretsmanager_secret.kafka_sasl_password.arn],
    aws_secretsmanager_secret.internal_token[*].arn,
    aws_secretsmanager_secret.meter_api_key[*].arn,
  )
}
