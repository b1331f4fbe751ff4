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

	RouteCreateInstallationToken = "POST /app/installations/{installation_id}/access_tokens"
	RouteGetApp                  = "GET /app"
	RouteGetAuthenticatedUser    = "GET /user"
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

	{RouteCreateInstallationToken, authApp, (*Server).createInstallationToken},
	{RouteGetApp, authApp, (*Server).getApp},
	{RouteGetAuthenticatedUser, authToken, (*Server).getAuthenticatedUser},
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
