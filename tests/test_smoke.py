def test_insert_then_get(client):
    created = client.post("/dual", json={"text": "hello"})
    assert created.status_code == 201
    row_id = created.get_json()["id"]
    fetched = client.get(f"/dual/{row_id}")
    assert fetched.get_json() == {"status": "success", "data": {"id": row_id, "text": "hello"}}
