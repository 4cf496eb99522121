# 002 §5.3.2 终极版, server. Binds 127.0.0.1 port 0 and prints the port.
import subprocess
import socket
import struct # 该模块可以把一个类型，如数字，转成固定长度的bytes
import json
def execute(cmd):
    res=subprocess.Popen(cmd,shell=True,stdout=subprocess.PIPE,stderr=subprocess.PIPE)
    stdout = res.stdout.read()
    stderr = res.stderr.read()
    return stdout+stderr
def run():

    server = socket.socket()
    # 当操作系统没来得及释放端口时，再次启动服务端就会报错，这时候我们就需要设置这条参数
    server.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
    server.bind(("127.0.0.1",0))
    server.listen(5) # 限制请求数
    print(server.getsockname()[1], flush=True)  # sockit: tell the test the port

    while True:#链接循环
        conn,client_addr = server.accept() # conn：三次握手建立的双向连接 addr：客户端地址和ip
        while True:# 通信循环
            try:
                cmd = conn.recv(1024)
                if len(cmd) == 0:break

                res = execute(cmd.decode("utf-8"))
                # 先制作报头{"total_size_bytes":100,"filename":""....}
                head = {"total_size":len(res)}
                head = json.dumps(head).encode("utf-8")
                # 发送报头的长度
                head_length = struct.pack("i",len(head))
                conn.send(head_length)

                # 发送报头(报头里面有真实数据的长度)
                conn.send(head)

                # 再发送真实数据
                conn.send(res)
            except ConnectionResetError:break
        conn.close()
    server.close()


if __name__ == '__main__':
    run()
