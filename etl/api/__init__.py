"""The HTTP edge: the only package that imports httpx and tenacity.

`client` (the API client: auth header, retry policy, status -> error), `responses` (reading one
response; httpx's exceptions -> ours), `ratelimit` (the shared request budget) and `recordings`
(425 polling, the signed-URL download, publishing the audio).
"""
