locals {
  # ---------------------------------------------------------------------------
  # The agent container's process settings, written out literally so that a
  # reader (and the repository's tests, which run the image with exactly these
  # settings) sees what ECS gets. Keep them literal: no expressions in here.
  #
  # root (default): azp-entrypoint starts as uid 0 with only the capabilities it
  # needs to prepare the agent's files and drop the listener and its jobs to the
  # image's `agent` user (AZP_RUN_AS); everything else is dropped.
  # non-root: the whole container runs as the `agent` user (1000:1000) with no
  # capability at all, for organisations whose policy forbids root containers
  # (for example AWS Control Tower CT.ECS.PR.3). The agent then owns its own
  # files, so a job can rewrite the agent's registration and binaries.
  agent_process_modes = {
    root = {
      user         = "0"
      capabilities = { add = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"], drop = ["ALL"] }
      environment  = { AZP_RUN_AS = "agent" }
    }
    non-root = {
      user         = "1000:1000"
      capabilities = { add = [], drop = ["ALL"] }
      environment  = {}
    }
  }

  # The binary's own health command: the same as the image HEALTHCHECK and compose.
  health_command = ["CMD", "/usr/local/bin/azp-entrypoint", "health"]

  # ECS stopTimeout and AZP_STOP_TIMEOUT are always the same number of seconds:
  # the entrypoint plans its whole stop inside the time ECS allows.
  # ---------------------------------------------------------------------------

  agent_process = local.agent_process_modes[var.agent_container_user]

  # uid:gid of the image's non-root `agent` user (image/Dockerfile); the EFS access
  # point uses the same ids.
  agent_uid  = 1000
  agent_gid  = 1000
  agent_user = "${local.agent_uid}:${local.agent_gid}"

  fixed  = var.scaling == "fixed"
  scaler = var.scaling == "scaler"

  agent_names = [
    for i in range(var.agents_per_task) :
    var.agents_per_task == 1 ? "agent" : "agent-${i + 1}"
  ]

  image = (
    var.image_digest != null
    ? "${aws_ecr_repository.agent.repository_url}@${var.image_digest}"
    : "${aws_ecr_repository.agent.repository_url}:${var.image_tag}"
  )

  # Paths inside the containers. /azp/work is a VOLUME in the image, owned by the
  # agent, so a bind-mount volume there starts with the right owner.
  work_path = "/azp/work"
  efs_path  = "/azp/efs"

  # What each storage mode adds to the environment. A volume used by more than one
  # agent container is shared: the agents lease slots under AZP_WORK.
  storage_environment = {
    ephemeral = {}
    bind = {
      AZP_WORK        = local.work_path
      AZP_WORK_SHARED = "true"
    }
    ebs = merge(
      { AZP_WORK = local.work_path },
      var.agents_per_task > 1 ? { AZP_WORK_SHARED = "true" } : {},
    )
    efs = merge(
      {
        AZP_AGENT_CACHE = "${local.efs_path}/packages"
        AZP_TOOLS_DIR   = "${local.efs_path}/tools"
      },
      var.efs_work ? { AZP_WORK = "${local.efs_path}/work", AZP_WORK_SHARED = "true" } : {},
    )
  }[var.storage_mode]

  storage_mount_points = {
    ephemeral = []
    bind      = [{ sourceVolume = "work", containerPath = local.work_path, readOnly = false }]
    ebs       = [{ sourceVolume = "work", containerPath = local.work_path, readOnly = false }]
    efs       = [{ sourceVolume = "efs", containerPath = local.efs_path, readOnly = false }]
  }[var.storage_mode]

  # Settings every agent container gets, in both scaling modes.
  common_environment = merge(
    {
      AZP_URL  = var.azp_url
      AZP_POOL = var.azp_pool
      # The ARN, not the token: the entrypoint fetches the secret with the task role
      # whenever it needs a credential, so a rotated token is picked up without a
      # new task.
      AZP_SECRET_ID    = aws_secretsmanager_secret.azp.arn
      AZP_STOP_TIMEOUT = "${var.stop_timeout}s"
      AZP_LOG_FORMAT   = "json"
    },
    local.agent_process.environment,
    var.agent_version == "" ? {} : { AZP_AGENT_VERSION = var.agent_version },
    local.storage_environment,
  )

  # scaling = "fixed": a service of long-lived (or --once, restarted) agents.
  environment = merge(
    local.common_environment,
    {
      AZP_ONCE                = tostring(var.once)
      AZP_ECS_TASK_PROTECTION = tostring(var.task_protection)
    },
    var.agent_name_prefix == "" ? {} : { AZP_AGENT_NAME_PREFIX = var.agent_name_prefix },
    var.extra_environment,
  )

  # One agent container; `name` and `environment` are filled in per use.
  agent_container = {
    image     = local.image
    essential = true
    user      = local.agent_process.user

    # Must equal AZP_STOP_TIMEOUT (above): the entrypoint plans its stop inside it.
    stopTimeout = var.stop_timeout

    healthCheck = {
      command     = local.health_command
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = var.health_check_start_period
    }

    linuxParameters = {
      # azp-entrypoint is the init: it forwards signals and reaps orphans itself.
      initProcessEnabled = false
      capabilities       = local.agent_process.capabilities
    }

    # The agent writes its own directory (.agent, .credentials, _diag, _work), so
    # the root file system stays writable (Security Hub ECS.5 waived, see README).
    readonlyRootFilesystem = false

    mountPoints = local.storage_mount_points
    volumesFrom = []

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.agent.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "agent"
      }
    }
  }

  container_definitions = [
    for name in local.agent_names : merge(local.agent_container, {
      name = name
      environment = [
        for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }
      ]
    })
  ]
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = var.fargate_base
    weight            = var.fargate_weight
  }

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE_SPOT"
    weight            = var.fargate_spot_weight
  }
}

# scaling = "fixed" only (scaler mode: scaler.tf).
resource "aws_ecs_task_definition" "agent" {
  count = local.fixed ? 1 : 0

  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.container_definitions)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  ephemeral_storage {
    size_in_gib = var.ephemeral_storage_gib
  }

  # bind: task-scoped scratch shared by the task's agent containers.
  dynamic "volume" {
    for_each = var.storage_mode == "bind" ? ["work"] : []
    content {
      name = volume.value
    }
  }

  # ebs: a new volume per task, described by the service's volume_configuration.
  dynamic "volume" {
    for_each = var.storage_mode == "ebs" ? ["work"] : []
    content {
      name                = volume.value
      configure_at_launch = true
    }
  }

  # efs: encrypted in transit, mounted through the non-root access point with the
  # task role (IAM authorisation).
  dynamic "volume" {
    for_each = var.storage_mode == "efs" ? ["efs"] : []
    content {
      name = volume.value

      efs_volume_configuration {
        file_system_id     = aws_efs_file_system.this[0].id
        transit_encryption = "ENABLED"

        authorization_config {
          access_point_id = aws_efs_access_point.this[0].id
          iam             = "ENABLED"
        }
      }
    }
  }
}

resource "aws_ecs_service" "agent" {
  count = local.fixed ? 1 : 0

  name             = var.name
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.agent[0].arn
  desired_count    = var.desired_count
  platform_version = "LATEST"

  # No load balancer: agents only make outbound connections.
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  enable_execute_command  = false

  # New agents come up before old ones are stopped; a task definition that never
  # becomes healthy is rolled back.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = var.fargate_base
    weight            = var.fargate_weight
  }

  capacity_provider_strategy {
    capacity_provider = "FARGATE_SPOT"
    weight            = var.fargate_spot_weight
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = concat([aws_security_group.task.id], var.additional_security_group_ids)
    assign_public_ip = var.assign_public_ip
  }

  dynamic "volume_configuration" {
    for_each = var.storage_mode == "ebs" ? ["work"] : []
    content {
      name = volume_configuration.value

      managed_ebs_volume {
        role_arn         = aws_iam_role.infrastructure[0].arn
        encrypted        = true
        kms_key_id       = var.ebs_kms_key_arn
        volume_type      = var.ebs_volume_type
        size_in_gb       = var.ebs_size_gib
        iops             = var.ebs_iops
        throughput       = var.ebs_throughput
        file_system_type = "xfs"
      }
    }
  }

  # The task role's policies must exist before an agent tries to read its secret,
  # and the capacity providers before the strategy refers to them.
  depends_on = [
    aws_ecs_cluster_capacity_providers.this,
    aws_iam_role_policy.task,
    aws_iam_role_policy.execution,
  ]
}

# The fixed-mode task definition and service were single resources before
# scaling modes existed; these keep existing stacks from replacing them.
moved {
  from = aws_ecs_task_definition.agent
  to   = aws_ecs_task_definition.agent[0]
}

moved {
  from = aws_ecs_service.agent
  to   = aws_ecs_service.agent[0]
}
