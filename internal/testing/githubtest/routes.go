package githubtest

// Routes, named by their pattern (method and path relative to the API root,
// in Go 1.22 ServeMux syntax). Pass them to FailNext and Count.
const (
	RouteCreateDeployment       = "POST /repos/{owner}/{repo}/deployments"
	RouteListDeployments        = "GET /repos/{owner}/{repo}/deployments"
	RouteGetDeployment          = "GET /repos/{owner}/{repo}/deployments/{deployment_id}"
	RouteCreateDeploymentStatus = "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses"
	RouteListDeploymentStatuses = "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses"

	RouteListIssueComments  = "GET /repos/{owner}/{repo}/issues/{issue_number}/comments"
	RouteCreateIssueComment = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments"
	RouteUpdateIssueComment = "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"
	RouteDeleteIssueComment = "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}"
	// GET /repos/{owner}/{repo}/issues/comments/{comment_id} would conflict
	// with RouteListIssueComments in ServeMux (neither pattern is more
	// specific); add it with a dispatching handler if it is ever needed.

	RouteGetContent = "GET /repos/{owner}/{repo}/contents/{path...}"

	RouteGetPullRequest = "GET /repos/{owner}/{repo}/pulls/{pull_number}"
	RouteRemoveLabel    = "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}"

	RouteCreateInstallationToken = "POST /app/installations/{installation_id}/access_tokens"
	RouteGetApp                  = "GET /app"
	RouteGetAuthenticatedUser    = "GET /user"

	RouteGenerateOrgJITConfig       = "POST /orgs/{org}/actions/runners/generate-jitconfig"
	RouteCreateOrgRegistrationToken = "POST /orgs/{org}/actions/runners/registration-token"
	RouteListOrgRunners             = "GET /orgs/{org}/actions/runners"
	RouteGetOrgRunner               = "GET /orgs/{org}/actions/runners/{runner_id}"
	RouteDeleteOrgRunner            = "DELETE /orgs/{org}/actions/runners/{runner_id}"

	RouteGenerateRepoJITConfig       = "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig"
	RouteCreateRepoRegistrationToken = "POST /repos/{owner}/{repo}/actions/runners/registration-token"
	RouteListRepoRunners             = "GET /repos/{owner}/{repo}/actions/runners"
	RouteGetRepoRunner               = "GET /repos/{owner}/{repo}/actions/runners/{runner_id}"
	RouteDeleteRepoRunner            = "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}"

	RouteGetWorkflowJob = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}"
)

// routes is the routing table. Each entry is served at / and at /api/v3/.
// Handlers run after fault injection and authentication; they lock s.mu
// around the state they touch.
var routes = []route{
	{RouteCreateDeployment, authToken, (*Server).createDeployment},
	{RouteListDeployments, authToken, (*Server).listDeployments},
	{RouteGetDeployment, authToken, (*Server).getDeployment},
	{RouteCreateDeploymentStatus, authToken, (*Server).createDeploymentStatus},
	{RouteListDeploymentStatuses, authToken, (*Server).listDeploymentStatuses},

	{RouteListIssueComments, authToken, (*Server).listIssueComments},
	{RouteCreateIssueComment, authToken, (*Server).createIssueComment},
	{RouteUpdateIssueComment, authToken, (*Server).updateIssueComment},
	{RouteDeleteIssueComment, authToken, (*Server).deleteIssueComment},

	{RouteGetContent, authToken, (*Server).getContent},

	{RouteGetPullRequest, authToken, (*Server).getPullRequest},
	{RouteRemoveLabel, authToken, (*Server).removeIssueLabel},

	{RouteCreateInstallationToken, authApp, (*Server).createInstallationToken},
	{RouteGetApp, authApp, (*Server).getApp},
	{RouteGetInstallation, authApp, (*Server).getInstallation},
	{RouteGetOrgInstallation, authApp, (*Server).getOrgInstallation},
	{RouteGetUserInstallation, authApp, (*Server).getUserInstallation},
	{RouteGetAppHookConfig, authApp, (*Server).getAppHookConfig},
	{RouteGetAuthenticatedUser, authToken, (*Server).getAuthenticatedUser},

	{RouteGenerateOrgJITConfig, authToken, (*Server).generateJITConfig},
	{RouteCreateOrgRegistrationToken, authToken, (*Server).createRegistrationToken},
	{RouteListOrgRunners, authToken, (*Server).listRunners},
	{RouteGetOrgRunner, authToken, (*Server).getRunner},
	{RouteDeleteOrgRunner, authToken, (*Server).deleteRunner},

	{RouteGenerateRepoJITConfig, authToken, (*Server).generateJITConfig},
	{RouteCreateRepoRegistrationToken, authToken, (*Server).createRegistrationToken},
	{RouteListRepoRunners, authToken, (*Server).listRunners},
	{RouteGetRepoRunner, authToken, (*Server).getRunner},
	{RouteDeleteRepoRunner, authToken, (*Server).deleteRunner},

	{RouteGetWorkflowJob, authToken, (*Server).getWorkflowJob},

	{RouteOAuthAuthorize, authNone, (*Server).oauthAuthorize},
	{RouteOAuthAuthorizeSubmit, authNone, (*Server).oauthAuthorizeSubmit},
	{RouteOAuthAccessToken, authNone, (*Server).oauthAccessToken},
	{RouteGetRepo, authToken, (*Server).getRepo},
	{RouteGetOrgMembership, authToken, (*Server).getOrgMembership},
	{RouteCheckOrgMember, authToken, (*Server).checkOrgMember},

	// Test-only control routes (not GitHub's API; see ControlClaimRunner).
	{ControlAddUser, authNone, (*Server).controlAddUser},
	{ControlAddCollaborator, authNone, (*Server).controlAddCollaborator},
	{ControlAddOrgMember, authNone, (*Server).controlAddOrgMember},
	{ControlAddOAuthApp, authNone, (*Server).controlAddOAuthApp},
	{ControlClaimRunner, authNone, (*Server).claimRunner},
	{ControlCompleteJob, authNone, (*Server).completeJob},
	{ControlRegisterRunner, authNone, (*Server).registerRunner},
}

// isRoute reports whether pattern names a route of the table.
func isRoute(pattern string) bool {
	for _, r := range routes {
		if r.pattern == pattern {
			return true
		}
	}
	return false
}
