# The secret is created empty: the token is written out of band
# (aws secretsmanager put-secret-value, see README) or through the write-only
# argument below, so it never enters the Terraform plan or state.
resource "aws_secretsmanager_secret" "azp" {
  name_prefix             = "${var.name}-azp-token-"
  description             = "Azure DevOps token for the ${var.name} agents (a plain string, or JSON with AZP_TOKEN or AZP_CLIENTID/AZP_CLIENTSECRET/AZP_TENANTID)"
  kms_key_id              = var.secret_kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "azp" {
  count = var.azp_token_version == null ? 0 : 1

  secret_id                = aws_secretsmanager_secret.azp.id
  secret_string_wo         = var.azp_token
  secret_string_wo_version = var.azp_token_version
}
