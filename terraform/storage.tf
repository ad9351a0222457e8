# storage_mode = efs: one encrypted file system for the package and tool caches
# (and the work directory when efs_work = true), reached only from the agent tasks,
# only over TLS, only through a non-root access point.

locals {
  efs            = var.storage_mode == "efs"
  efs_subnet_ids = local.efs ? toset(coalesce(var.efs_subnet_ids, var.subnet_ids)) : toset([])
}

resource "aws_efs_file_system" "this" {
  count = local.efs ? 1 : 0

  creation_token                  = "${var.name}-agent"
  encrypted                       = true
  kms_key_id                      = var.efs_kms_key_arn
  performance_mode                = "generalPurpose"
  throughput_mode                 = var.efs_throughput_mode
  provisioned_throughput_in_mibps = var.efs_throughput_mode == "provisioned" ? var.efs_provisioned_throughput_mibps : null

  tags = {
    Name = "${var.name}-agent"
  }
}

# One mount target per Availability Zone of the task subnets.
resource "aws_efs_mount_target" "this" {
  for_each = local.efs_subnet_ids

  file_system_id  = aws_efs_file_system.this[0].id
  subnet_id       = each.value
  security_groups = [aws_security_group.efs[0].id]
}

# Every file operation runs as the agent user, in a directory EFS creates owned by it.
resource "aws_efs_access_point" "this" {
  count = local.efs ? 1 : 0

  file_system_id = aws_efs_file_system.this[0].id

  posix_user {
    uid = local.agent_uid
    gid = local.agent_gid
  }

  root_directory {
    path = "/${var.name}"

    creation_info {
      owner_uid   = local.agent_uid
      owner_gid   = local.agent_gid
      permissions = "0750"
    }
  }

  tags = {
    Name = "${var.name}-agent"
  }
}

data "aws_iam_policy_document" "efs" {
  count = local.efs ? 1 : 0

  statement {
    sid       = "DenyWithoutTls"
    effect    = "Deny"
    actions   = ["*"]
    resources = [aws_efs_file_system.this[0].arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid    = "DenyOutsideTheAccessPoint"
    effect = "Deny"
    actions = [
      "elasticfilesystem:ClientMount",
      "elasticfilesystem:ClientRootAccess",
      "elasticfilesystem:ClientWrite",
    ]
    resources = [aws_efs_file_system.this[0].arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.this[0].arn]
    }
  }

  statement {
    sid     = "AgentTaskRoleThroughTheAccessPoint"
    actions = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [
      aws_efs_file_system.this[0].arn,
    ]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.task.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.this[0].arn]
    }
  }
}

resource "aws_efs_file_system_policy" "this" {
  count = local.efs ? 1 : 0

  file_system_id = aws_efs_file_system.this[0].id
  policy         = data.aws_iam_policy_document.efs[0].json
}
