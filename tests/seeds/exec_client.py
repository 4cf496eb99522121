# 002 §5.3.2 终极版, client. Usage: exec_client.py HOST PORT
import socket
import struct # 该模块可以把一个类型，如数字，转成固定长度的bytes
import json
import sys
client = socket.socket()
client.connect((sys.argv[1], int(sys.argv[2])))


while True:# 通信循环
    try:
        msg = input(">>：").strip().encode("utf-8")
    except EOFError:  # sockit: stdin ended, the test is over
        break
    if(len(msg) == 0):continue # 如果客户端发送空，服务端是收不到的，必须要处理下
    client.send(msg)
    # 先收报头长度
    head_length_bytes = client.recv(4)
    head_length = struct.unpack("i",head_length_bytes)[0]

    # 根据报头的长度，拿到报头
    header_bytes = client.recv(head_length)
    header_json = header_bytes.decode("utf-8")
    header = json.loads(header_json)

    # 根据报头中拿出真实数据的长度
    total_size = header["total_size"]

    # 接受真实数据
    res = b""
    recv_size = 0
    while recv_size < total_size:
        data = client.recv(100)
        res += data
        recv_size += len(data)
    # 打印数据
    print(res.decode("utf-8"))

client.close()
