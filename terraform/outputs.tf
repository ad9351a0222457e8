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
  description = "ECS service name."
  value       = aws_ecs_service.agent.name
}

output "task_definition_arn" {
  description = "Task definition ARN (family:revision), also for standalone run-task."
  value       = aws_ecs_task_definition.agent.arn
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
