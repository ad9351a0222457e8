locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Trust policies accept only calls made for this account's ECS resources in this
  # region (confused-deputy protection).
  ecs_source_arn = "arn:${local.partition}:ecs:${var.region}:${local.account_id}:*"

  # Task protection is granted on this cluster's tasks only.
  cluster_tasks_arn = "arn:${local.partition}:ecs:${var.region}:${local.account_id}:task/${var.name}/*"
}

# ---------------------------------------------------------------------------
# Execution role: used by ECS (not by the agent) to pull the image and write logs.

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    sid     = "EcsTasks"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.ecs_source_arn]
    }
  }
}

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-exec-"
  description        = "ECS pulls the ${var.name} image and writes its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "execution" {
  # GetAuthorizationToken has no resource-level permissions: AWS requires "*".
  #tfsec:ignore:aws-iam-no-policy-wildcards ecr:GetAuthorizationToken supports only the "*" resource
  statement {
    sid       = "EcrAuthorizationToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPullOneRepository"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.agent.arn]
  }

  # ECS names the log streams at run time (<prefix>/<container>/<task id>).
  #tfsec:ignore:aws-iam-no-policy-wildcards the streams of this one log group are named by ECS at run time
  statement {
    sid       = "LogsOneGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.agent.arn}:log-stream:*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-image-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------------------
# Task role: the agent's own identity. Pipeline steps do not get it unless
# AZP_JOB_TASK_ROLE=true, because it can read the agent's token.

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-task-"
  description        = "azp-entrypoint in ${var.name} tasks: read its token, task protection"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ReadAgentSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.azp.arn]
  }

  dynamic "statement" {
    for_each = var.secret_kms_key_arn == null ? [] : [var.secret_kms_key_arn]
    content {
      sid       = "DecryptAgentSecretThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${var.region}.amazonaws.com"]
      }
    }
  }

  statement {
    sid       = "TaskScaleInProtection"
    actions   = ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"]
    resources = [local.cluster_tasks_arn]
  }

  dynamic "statement" {
    for_each = var.storage_mode == "efs" ? ["efs"] : []
    content {
      sid       = "MountAgentFileSystemThroughAccessPoint"
      actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
      resources = [aws_efs_file_system.this[0].arn]

      condition {
        test     = "StringEquals"
        variable = "elasticfilesystem:AccessPointArn"
        values   = [aws_efs_access_point.this[0].arn]
      }
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "agent"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# ---------------------------------------------------------------------------
# Infrastructure role (storage_mode = ebs): ECS creates, attaches and deletes the
# per-task EBS volumes with it.

data "aws_iam_policy_document" "ecs_infrastructure_trust" {
  statement {
    sid     = "EcsInfrastructure"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.ecs_source_arn]
    }
  }
}

resource "aws_iam_role" "infrastructure" {
  count = var.storage_mode == "ebs" ? 1 : 0

  name_prefix        = "${var.name}-infra-"
  description        = "ECS manages the EBS volumes of ${var.name} tasks"
  assume_role_policy = data.aws_iam_policy_document.ecs_infrastructure_trust.json
}

# The AWS managed policy scopes itself to volumes ECS tags as its own.
resource "aws_iam_role_policy_attachment" "infrastructure_volumes" {
  count = var.storage_mode == "ebs" ? 1 : 0

  role       = aws_iam_role.infrastructure[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSInfrastructureRolePolicyForVolumes"
}

data "aws_iam_policy_document" "infrastructure_kms" {
  count = var.storage_mode == "ebs" && var.ebs_kms_key_arn != null ? 1 : 0

  statement {
    sid = "UseEbsKeyThroughEc2"
    actions = [
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
    ]
    resources = [var.ebs_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ec2.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "infrastructure_kms" {
  count = var.storage_mode == "ebs" && var.ebs_kms_key_arn != null ? 1 : 0

  name   = "ebs-kms"
  role   = aws_iam_role.infrastructure[0].id
  policy = data.aws_iam_policy_document.infrastructure_kms[0].json
}

# ---------------------------------------------------------------------------
# Scaler role (scaling = "scaler"), one per profile: what `azp-entrypoint scale`
# calls, and nothing else. Written against the scaler's ECS calls (RunTask,
# StopTask, DescribeTasks, ListTasks, DescribeTaskDefinition, DescribeClusters)
# and its secret; internal/deploytest's TestScalerIAMMatchesCalls holds the two
# together.
#
# Resource "*" only where ECS offers no resource-level permission:
#   ecs:DescribeTaskDefinition  (no resource type at all)
#   ecs:ListTasks               (scoped by the ecs:cluster condition instead)

locals {
  cluster_arn = "arn:${local.partition}:ecs:${var.region}:${local.account_id}:cluster/${var.name}"
}

resource "aws_iam_role" "scaler" {
  for_each = local.scaler_profiles

  name_prefix        = "${var.name}-scale-"
  description        = "azp-entrypoint scale for the ${each.key} profile of ${var.name}: start and stop its agent tasks"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "scaler" {
  for_each = local.scaler_profiles

  statement {
    sid       = "ReadAgentSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.azp.arn]
  }

  dynamic "statement" {
    for_each = var.secret_kms_key_arn == null ? [] : [var.secret_kms_key_arn]
    content {
      sid       = "DecryptAgentSecretThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${var.region}.amazonaws.com"]
      }
    }
  }

  # Every revision of this profile's agent family, in this cluster only.
  statement {
    sid       = "RunAgentTasks"
    actions   = ["ecs:RunTask"]
    resources = ["arn:${local.partition}:ecs:${var.region}:${local.account_id}:task-definition/${each.value.family}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  # RunTask with tags needs TagResource, granted only as part of creating a task.
  statement {
    sid       = "TagAgentTasksAtLaunch"
    actions   = ["ecs:TagResource"]
    resources = [local.cluster_tasks_arn]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }

  # The agent task definition's two roles, to ECS tasks only.
  statement {
    sid       = "PassAgentRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task.arn, aws_iam_role.execution.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid       = "WatchAndStopAgentTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = [local.cluster_tasks_arn]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  #tfsec:ignore:aws-iam-no-policy-wildcards ecs:ListTasks has no task resource to scope to; the ecs:cluster condition limits it to this cluster
  statement {
    sid       = "ListClusterTasks"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "DescribeCluster"
    actions   = ["ecs:DescribeClusters"]
    resources = [local.cluster_arn]
  }

  #tfsec:ignore:aws-iam-no-policy-wildcards ecs:DescribeTaskDefinition supports no resource-level permissions
  statement {
    sid       = "ReadAgentTaskDefinition"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "scaler" {
  for_each = local.scaler_profiles

  name   = "scale-agent-tasks"
  role   = aws_iam_role.scaler[each.key].id
  policy = data.aws_iam_policy_document.scaler[each.key].json
}
