package ecssim

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"time"
)

// Wire shapes of the ECS API (awsJson1.1; member names as in the API reference's data types,
// docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Types.html). Timestamps travel as epoch
// seconds with a fraction, as the awsJson protocols define.

type epoch time.Time

func (e epoch) MarshalJSON() ([]byte, error) {
	t := time.Time(e)
	return json.Marshal(math.Round(float64(t.UnixNano())/1e6) / 1e3)
}

func ts(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}

// KeyValuePair is an environment entry (API_KeyValuePair).
type KeyValuePair struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Tag is a resource tag (API_Tag).
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ContainerDefinition is the part of API_ContainerDefinition the simulator uses.
type ContainerDefinition struct {
	Name        string         `json:"name"`
	Image       string         `json:"image,omitempty"`
	Essential   *bool          `json:"essential,omitempty"`
	Environment []KeyValuePair `json:"environment,omitempty"`
	StopTimeout *int           `json:"stopTimeout,omitempty"`
	Command     []string       `json:"command,omitempty"`
}

// RuntimePlatform is API_RuntimePlatform.
type RuntimePlatform struct {
	CPUArchitecture       string `json:"cpuArchitecture,omitempty"`
	OperatingSystemFamily string `json:"operatingSystemFamily,omitempty"`
}

// TaskDefinition is the part of API_TaskDefinition the simulator uses.
type TaskDefinition struct {
	TaskDefinitionArn       string                `json:"taskDefinitionArn,omitempty"`
	Family                  string                `json:"family"`
	Revision                int                   `json:"revision,omitempty"`
	Status                  string                `json:"status,omitempty"`
	NetworkMode             string                `json:"networkMode,omitempty"`
	RequiresCompatibilities []string              `json:"requiresCompatibilities,omitempty"`
	CPU                     string                `json:"cpu,omitempty"`
	Memory                  string                `json:"memory,omitempty"`
	RuntimePlatform         *RuntimePlatform      `json:"runtimePlatform,omitempty"`
	ContainerDefinitions    []ContainerDefinition `json:"containerDefinitions"`
	TaskRoleArn             string                `json:"taskRoleArn,omitempty"`
	ExecutionRoleArn        string                `json:"executionRoleArn,omitempty"`
	RegisteredAt            *epoch                `json:"registeredAt,omitempty"`
}

type containerOverride struct {
	Name        string         `json:"name"`
	Environment []KeyValuePair `json:"environment,omitempty"`
	Command     []string       `json:"command,omitempty"`
}

type taskOverride struct {
	ContainerOverrides []containerOverride `json:"containerOverrides,omitempty"`
	CPU                string              `json:"cpu,omitempty"`
	Memory             string              `json:"memory,omitempty"`
	TaskRoleArn        string              `json:"taskRoleArn,omitempty"`
}

type capacityProviderStrategyItem struct {
	CapacityProvider string `json:"capacityProvider"`
	Weight           int    `json:"weight,omitempty"`
	Base             int    `json:"base,omitempty"`
}

type awsvpcConfiguration struct {
	Subnets        []string `json:"subnets"`
	SecurityGroups []string `json:"securityGroups,omitempty"`
	AssignPublicIP string   `json:"assignPublicIp,omitempty"`
}

type networkConfiguration struct {
	AwsvpcConfiguration *awsvpcConfiguration `json:"awsvpcConfiguration,omitempty"`
}

type runTaskInput struct {
	Cluster                  string                         `json:"cluster"`
	TaskDefinition           string                         `json:"taskDefinition"`
	Count                    *int                           `json:"count"`
	StartedBy                string                         `json:"startedBy"`
	Group                    string                         `json:"group"`
	LaunchType               string                         `json:"launchType"`
	CapacityProviderStrategy []capacityProviderStrategyItem `json:"capacityProviderStrategy"`
	NetworkConfiguration     *networkConfiguration          `json:"networkConfiguration"`
	Overrides                *taskOverride                  `json:"overrides"`
	Tags                     []Tag                          `json:"tags"`
	ClientToken              string                         `json:"clientToken"`
	PlatformVersion          string                         `json:"platformVersion"`
	PropagateTags            string                         `json:"propagateTags"`
	EnableECSManagedTags     bool                           `json:"enableECSManagedTags"`
}

type failure struct {
	Arn    string `json:"arn,omitempty"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

type wireContainer struct {
	ContainerArn string `json:"containerArn"`
	TaskArn      string `json:"taskArn"`
	Name         string `json:"name"`
	Image        string `json:"image,omitempty"`
	LastStatus   string `json:"lastStatus"`
	ExitCode     *int   `json:"exitCode,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

type wireAttachment struct {
	ID      string         `json:"id"`
	Type    string         `json:"type"`
	Status  string         `json:"status"`
	Details []KeyValuePair `json:"details"`
}

type wireTask struct {
	TaskArn              string           `json:"taskArn"`
	ClusterArn           string           `json:"clusterArn"`
	TaskDefinitionArn    string           `json:"taskDefinitionArn"`
	LastStatus           string           `json:"lastStatus"`
	DesiredStatus        string           `json:"desiredStatus"`
	StartedBy            string           `json:"startedBy,omitempty"`
	Group                string           `json:"group,omitempty"`
	LaunchType           string           `json:"launchType,omitempty"`
	CapacityProviderName string           `json:"capacityProviderName,omitempty"`
	PlatformVersion      string           `json:"platformVersion,omitempty"`
	CPU                  string           `json:"cpu,omitempty"`
	Memory               string           `json:"memory,omitempty"`
	AvailabilityZone     string           `json:"availabilityZone,omitempty"`
	Connectivity         string           `json:"connectivity,omitempty"`
	Version              int64            `json:"version"`
	Containers           []wireContainer  `json:"containers"`
	Attachments          []wireAttachment `json:"attachments,omitempty"`
	Overrides            *taskOverride    `json:"overrides,omitempty"`
	Tags                 []Tag            `json:"tags,omitempty"`
	CreatedAt            *epoch           `json:"createdAt,omitempty"`
	PullStartedAt        *epoch           `json:"pullStartedAt,omitempty"`
	PullStoppedAt        *epoch           `json:"pullStoppedAt,omitempty"`
	StartedAt            *epoch           `json:"startedAt,omitempty"`
	StoppingAt           *epoch           `json:"stoppingAt,omitempty"`
	ExecutionStoppedAt   *epoch           `json:"executionStoppedAt,omitempty"`
	StoppedAt            *epoch           `json:"stoppedAt,omitempty"`
	StopCode             string           `json:"stopCode,omitempty"`
	StoppedReason        string           `json:"stoppedReason,omitempty"`
}

type wireCluster struct {
	ClusterArn                        string   `json:"clusterArn"`
	ClusterName                       string   `json:"clusterName"`
	Status                            string   `json:"status"`
	RunningTasksCount                 int      `json:"runningTasksCount"`
	PendingTasksCount                 int      `json:"pendingTasksCount"`
	ActiveServicesCount               int      `json:"activeServicesCount"`
	RegisteredContainerInstancesCount int      `json:"registeredContainerInstancesCount"`
	CapacityProviders                 []string `json:"capacityProviders"`
}

// apiError is an awsJson1.1 error: HTTP status, the shape name in __type and a message.
// Source: Smithy "AWS JSON 1.1 protocol", "Operation error serialization" (the __type member and
// the X-Amzn-ErrorType header name the error shape).
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func clientErr(msg string) *apiError { return &apiError{http.StatusBadRequest, "ClientException", msg} }
func invalidParam(msg string) *apiError {
	return &apiError{http.StatusBadRequest, "InvalidParameterException", msg}
}

var (
	errUnrecognizedClient = errors.New("unknown access key")
	errSignatureMismatch  = errors.New("signature mismatch")
)

// The service's messages for those two (what the SDK shows the caller).
const (
	msgUnrecognizedClient = "The security token included in the request is invalid."
	msgSignatureMismatch  = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
)
