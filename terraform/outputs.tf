output "region" {
  description = "AWS region of the stack."
  value       = var.region
}

output "repository_url" {
  description = "ECR repository URL: docker push <repository_url>:<tag>, then set image_digest."
  value       = aws_ecr_repository.agent.repository_url
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ECS cluster ARN."
  value       = aws_ecs_cluster.this.arn
}

output "service_name" {
  description = "ECS service of the agents (scaling = fixed), else null."
  value       = local.fixed ? aws_ecs_service.agent[0].name : null
}

output "task_definition_arn" {
  description = "Agent task definition ARN (family:revision, scaling = fixed), also for standalone run-task; else null."
  value       = local.fixed ? aws_ecs_task_definition.agent[0].arn : null
}

output "profile_task_definition_arns" {
  description = "scaling = scaler: the agent task definition of each profile (family:revision), by profile key."
  value       = { for k, td in aws_ecs_task_definition.profile : k => td.arn }
}

output "scaler_service_names" {
  description = "scaling = scaler: the scaler's ECS service of each profile, by profile key (aws ecs describe-services --services <name>)."
  value       = { for k, svc in aws_ecs_service.scaler : k => svc.name }
}

output "scaler_role_arns" {
  description = "scaling = scaler: the scaler's task role of each profile, by profile key."
  value       = { for k, r in aws_iam_role.scaler : k => r.arn }
}

output "agent_name_prefixes" {
  description = "scaling = scaler: the agent name prefix of each profile (its agents and its placeholder, <prefix>placeholder, start with it); scaling = fixed: agent_name_prefix."
  value       = local.scaler ? { for k, p in local.scaler_profiles : k => p.agent_name_prefix } : { fixed = var.agent_name_prefix }
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the agents (and scalers)."
  value       = aws_cloudwatch_dashboard.agents.dashboard_name
}

output "log_group_name" {
  description = "CloudWatch Logs group of the agents."
  value       = aws_cloudwatch_log_group.agent.name
}

output "secret_arn" {
  description = "Secrets Manager secret to put the token into (aws secretsmanager put-secret-value --secret-id <secret_arn> --secret-string ...)."
  value       = aws_secretsmanager_secret.azp.arn
}

output "task_security_group_id" {
  description = "Security group of the agent tasks."
  value       = aws_security_group.task.id
}

output "task_role_arn" {
  description = "The agent's task role (reads the secret)."
  value       = aws_iam_role.task.arn
}

output "efs_file_system_id" {
  description = "EFS file system (storage_mode = efs), else null."
  value       = local.efs ? aws_efs_file_system.this[0].id : null
}
