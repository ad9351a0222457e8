# tflint configuration for scripts/lint-terraform.sh.
# Only the terraform ruleset bundled into the tflint binary: no plugin downloads,
# so linting works offline and in CI without a GitHub token.
config {
  call_module_type = "none"
  force            = false
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}

# The module is split by concern (ecs.tf, iam.tf, storage.tf, ...) on purpose; an
# empty main.tf would only satisfy the rule.
rule "terraform_standard_module_structure" {
  enabled = false
}
